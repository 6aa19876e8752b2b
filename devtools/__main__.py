"""`python -m devtools`: the development tools' one entry (see `devtools.cli`)."""

from devtools.cli import app

app(prog_name="python -m devtools")
