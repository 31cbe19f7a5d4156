"""Every shape `className` can point to (docs/pulsar-functions.md §1.1)."""

from pulsar import Function


class WithContext(Function):
    def process(self, input, context):  # noqa: A002
        return f"ctx:{input}:{context is not None}"


class NeedsArgs:
    """__init__ needs an argument, so the instance treats the *class* as a pure function."""

    def __init__(self, required):
        self.required = required

    @staticmethod
    def process(input):  # noqa: A002
        return f"pure:{input}"


def plain_function(input):  # noqa: A002
    return f"fn:{input}"


def process(input):  # noqa: A002
    """Used when className names the module itself."""
    return f"module:{input}"
