"""``acme/deployer``: the app the ``acme/ops`` agent's ``deploy`` tool runs (after a human approves)."""

from __future__ import annotations

from pydantic import BaseModel

import runyard


class DeployIn(BaseModel):
    env: str


@runyard.app("acme/deployer", version="1.0.0", description="Pretend to deploy to an environment.")
def deploy(input: DeployIn, ctx: runyard.AppContext) -> dict[str, str]:
    ctx.log(f"deploying to {input.env}")
    return {"deployed": input.env}
