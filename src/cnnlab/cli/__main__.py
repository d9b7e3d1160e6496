"""``python -m cnnlab.cli``: what torchrun and the subprocess tests start."""

from cnnlab.cli import main

main()
