"""Which stores the fulfilment app runs on: the setting chooses, else what the server says it
is (here FerretDB)."""

from __future__ import annotations

import pytest
from pymongo import AsyncMongoClient

from services.common.adapters.mongo import Doc
from services.fulfilment.adapters.mongo import MongoDecisionLog
from services.fulfilment.app import create_app
from tests.infra import Infra
from tests.pipeline import Topics, lifespans, settings_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("setting", "bodies"), [("auto", "text"), ("ferretdb", "text"),
                                                  ("mongodb", "nested")])
async def test_the_setting_or_the_server_chooses_the_adapter(
        infra: Infra, mongo: AsyncMongoClient[Doc], suffix: str, setting: str,
        bodies: str) -> None:
    _, _, base = settings_for(infra, Topics.unique(suffix), f"amends_choice_{suffix}")
    settings = base.model_copy(update={"store_backend": setting})
    app = create_app(settings)
    async with lifespans([app]):
        decisions = app.state.service.stores.decisions
        assert isinstance(decisions, MongoDecisionLog)
        assert decisions.bodies == bodies
    await mongo.drop_database(settings.mongo_db)
