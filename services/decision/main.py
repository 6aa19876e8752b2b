"""Run decision: `python -m services.decision`."""

from services.common.runtime import serve
from services.decision.app import create_app
from services.decision.settings import DecisionSettings


def main() -> None:
    settings = DecisionSettings()
    serve(create_app(settings), settings)
