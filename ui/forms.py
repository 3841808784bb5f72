"""The one mapping between UI components and TrainingConfig fields, keyed by field name."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from core.config import TrainingConfig
from core.errors import ConfigError


class ConfigForm:
    """Components registered under TrainingConfig field names, read back into a TrainingConfig.

    Tabs call ``add(field_name, component)``; event handlers take ``form.inputs`` as inputs and call
    ``form.to_config(*values)``. Registering a name that is not a TrainingConfig field raises KeyError, so the UI
    cannot drift from the engine (tests/test_forms.py checks the same for the built app).
    """

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def add(self, name: str, component: Any) -> Any:
        """Register ``component`` as the editor of field ``name``; returns the component."""
        if name not in TrainingConfig.field_names():
            raise KeyError(f"{name} is not a TrainingConfig field")
        self.components[name] = component
        return component

    @property
    def names(self) -> list[str]:
        """Field names in registration order (the order of ``inputs``)."""
        return list(self.components)

    @property
    def inputs(self) -> list[Any]:
        """Components in registration order, for an event's ``inputs=``."""
        return list(self.components.values())

    def to_dict(self, *values: Any) -> dict[str, Any]:
        """Values (in ``inputs`` order) as {field: value}; empty strings and None are left to defaults."""
        raw = dict(zip(self.names, values))
        return {k: v for k, v in raw.items() if v is not None and v != ""}

    def bind(self, fn: Callable[[TrainingConfig], Any], *, extra: tuple[str, ...] = ()) -> Callable[..., Any]:
        """Wrap ``fn(cfg, *extra_values)`` as a handler taking ``extra`` values then the form's values.

        The wrapper's signature names its parameters after the fields, so the app's HTTP API (gradio_client)
        takes ``lora_r=...``, ``max_steps=...`` like the CLI's config file does.
        """
        n_extra = len(extra)

        @functools.wraps(fn)
        def handler(*values: Any) -> Any:
            return fn(self.to_config(*values[n_extra:]), *values[:n_extra])

        handler.__signature__ = self.signature(extra)  # type: ignore[attr-defined]
        return handler

    def signature(self, extra: tuple[str, ...] = ()) -> inspect.Signature:
        """Signature with parameters ``extra`` then every field name (names the HTTP API's parameters)."""
        return inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in (*extra, *self.names)]
        )

    def to_config(self, *values: Any) -> TrainingConfig:
        """Build a validated TrainingConfig. Raises ConfigError listing every problem."""
        return TrainingConfig.from_dict(self.to_dict(*values))


def info(name: str) -> str:
    """The field's help text, for a component's ``info=``."""
    return TrainingConfig.help_for(name)


def launch_markdown(num_processes: Any, distributed_strategy: Any, accelerate_config_file: Any) -> str:
    """The Train tab's line under "Several GPUs": the equivalent CLI command and how the run will be launched."""
    from core.parallel import cli_command

    try:
        raw = {"num_processes": num_processes, "distributed_strategy": distributed_strategy}
        cfg = TrainingConfig.from_dict(  # an emptied field means its default (from_dict refuses null)
            {k: v for k, v in raw.items() if v not in (None, "")}
            | {"accelerate_config_file": accelerate_config_file or ""}
        )
    except ConfigError as exc:
        return "\n".join(f"- {p}" for p in exc.problems)
    if cfg.num_processes == 1 and not cfg.accelerate_config_file:
        how = "One process: training runs inside the app."
    elif cfg.num_processes == 0 and not cfg.accelerate_config_file:
        how = (
            "Auto: with several GPUs visible, `accelerate launch` of one process per GPU (the log names the "
            "strategy and why); otherwise training runs inside the app."
        )
    else:
        n = "one per visible GPU" if cfg.num_processes == 0 else f"{cfg.num_processes} processes"
        how = (
            f"`accelerate launch` of {n} (gloo on a machine without CUDA); the log names the strategy chosen "
            "and why, and the GPU memory estimate per GPU."
        )
    return f"{how} Same run from a terminal: `{cli_command(cfg)}`"


def with_request(fn: Any, signature: Any) -> Any:
    """Give a form handler ``fn(*values, request)`` the signature ``signature`` plus a trailing gr.Request
    parameter, so Gradio passes the request and names the API parameters after the fields."""
    params = [*signature.parameters.values()]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    fn.__signature__ = signature.replace(parameters=params)
    fn.__annotations__ = {"request": gr.Request}
    return fn
