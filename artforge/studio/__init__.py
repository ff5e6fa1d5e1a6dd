"""artforge studio: a web page (Gradio) over Triton for every served model, built from what the server says.

    artforge studio --url 127.0.0.1:8001 [--port 7860] [--host 127.0.0.1] [--bench DIR]

Each ready model gets a tab made from its contract (artforge/studio/pages.py): generators (DCGAN,
StyleGAN2, diffusion with its pictures forming) a grid from a class, a seed and their controls; token
models their text appearing as it is written; any other model a form of its inputs (pictures, sliders
within the limits, one slider per label for a mix of labels) and its outputs shown by what they hold.
Requests go through artforge's own client (replicas, failover, shared memory), and the studio calls the
same functions as the command line, so a page and `artforge generate/stylize/...` give the same result.
"""
