"""The one exception type users see as a one-line message (the CLI prints it and exits non-zero)."""


class ArtforgeError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class CheckpointError(ArtforgeError):
    """A checkpoint that is missing, truncated, of another family or of an incompatible config."""


class DataError(ArtforgeError):
    """A data folder that is missing, empty or unreadable."""


class ImageError(DataError):
    """One image file that cannot be read: corrupt, not an image, or too large."""


class ImageTooLarge(ImageError):
    """An image with more pixels than the reader accepts (a decompression bomb, or just huge)."""


class ServerUnavailable(ArtforgeError):
    """The Triton server cannot be reached (refused, gone or stopping) after the client's retries."""
