"""A small workflow that finishes on its own: two tasks, a parallel pair, a timer, a loop."""

from pydantic import BaseModel

from smithers_core import Loop, Par, Seq, Task, Timer, workflow


class Input(BaseModel):
    name: str = "world"
    rounds: int = 3


class Greeting(BaseModel):
    text: str


class Count(BaseModel):
    n: int


def greet(t, **_):
    t.log(f"greeting {t.input.name}")
    return Greeting(text=f"hello, {t.input.name}")


def shout(t, greeting: Greeting) -> Greeting:
    return Greeting(text=greeting.text.upper())


@workflow("hello", input=Input)
def hello(ctx):
    return Seq(
        Task("greet", greet, output=Greeting),
        Par(
            Task("shout", shout, output=Greeting, needs={"greeting": "greet"}),
            Task("count", lambda t: Count(n=len(t.input.name)), output=Count),
        ),
        Timer("pause", duration="300ms"),
        Loop(
            "rounds",
            lambda i: Task("round", lambda t: Count(n=t.iteration + 1), output=Count),
            until=lambda c: (c.latest("round", Count) or Count(n=0)).n >= ctx.input.rounds,
            max_iterations=10,
        ),
    )
