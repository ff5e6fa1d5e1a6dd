"""`python -m artforge ...` (what torchrun runs: torchrun --nproc-per-node 2 -m artforge train dcgan ...)."""
from artforge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
