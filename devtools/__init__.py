"""Development tools, kept out of the product (not installed, not in the image): the local
stack, the benchmark, the demo and the fake payment gateway. `python -m devtools --help`."""
