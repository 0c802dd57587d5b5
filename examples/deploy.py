"""Gateway quick-start workflow: build, wait for an approval, then ship."""

from pydantic import BaseModel

from smithers_core import Approval, Seq, Task, workflow


class DeployInput(BaseModel):
    sha: str = "main"
    env: str = "staging"


class Build(BaseModel):
    artifact: str


class Shipped(BaseModel):
    env: str
    artifact: str


@workflow("deploy", input=DeployInput)
def deploy(ctx):
    """Build a commit, ask a human, then ship it."""
    return Seq(
        Task("build", lambda t: Build(artifact=f"app-{t.input.sha}.tar.gz"), output=Build),
        Approval("approve", title=f"Ship {ctx.input.sha} to {ctx.input.env}?"),
        Task(
            "ship",
            lambda t, build: Shipped(env=t.input.env, artifact=build.artifact),
            output=Shipped,
            needs={"build": "build"},
        ),
    )
