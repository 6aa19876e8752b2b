"""Run fulfilment: `python -m services.fulfilment`."""

from services.common.runtime import serve
from services.fulfilment.app import create_app
from services.fulfilment.settings import FulfilmentSettings


def main() -> None:
    settings = FulfilmentSettings()
    serve(create_app(settings), settings)
