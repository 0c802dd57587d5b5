"""The issue's demo: a task, an approval gate, a signal, and a task that uses the signal."""

from pydantic import BaseModel

from smithers_core import Approval, Seq, Task, WaitSignal, workflow


class Input(BaseModel):
    value: int = 42
    msg: str = "hello"


class Result(BaseModel):
    value: int
    echo: str


class Go(BaseModel):
    msg: str


class Upper(BaseModel):
    upper: str


@workflow("demo", input=Input)
def demo(ctx):
    return Seq(
        Task("compute", lambda t: Result(value=t.input.value, echo=t.input.msg), output=Result),
        Approval("gate", title="Ship it?", summary="Approve the deploy.", on_deny="fail"),
        WaitSignal("go", output=Go),  # signal name defaults to the id
        Task("echo", lambda t, go: Upper(upper=go.msg.upper()), output=Upper, needs={"go": "go"}),
    )
