"""The one mapping between UI components and TrainingConfig fields, keyed by field name."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from core.config import TrainingConfig
from core.errors import ConfigError
from ui.i18n import tr


def _judged_by_config(component: Any) -> Any:
    """``component`` (a gr.Slider or gr.Number) with a preprocess that rounds like gradio's but never refuses a
    value for the component's range: TrainingConfig judges it and names the field.

    Why: gradio's Slider / Number preprocess raises on a value typed outside [minimum, maximum] ("Value 300 is
    greater than maximum value 256", naming no field). For a slider the page then clamps the box on blur and
    fires ``.change`` again, but gradio's front end drops a deferred ``.change`` re-run when the pending one
    failed (Blocks: the ``always_last`` queue is drained on success only), so every live handler (the LoRA
    formula, the memory estimate) kept the old value while the box showed the clamped one. With this, the
    handlers see what the box holds, then the clamped value on blur; an API call with ``lora_r=512`` trains
    r 512 as the CLI does, and ``lora_r=5000`` is refused naming lora_r. (Set on the instance: a subclass of a
    gradio component would make gradio write a ``.pyi`` stub next to this module at import.)
    """

    def preprocess(payload: float | None) -> float | int | None:
        if payload is None:
            return None
        return gr.Number.round_to_precision(payload, component.precision)

    component.preprocess = preprocess
    return component


def config_slider(*args: Any, **kwargs: Any) -> gr.Slider:
    """A gr.Slider (same arguments) whose range guides the page but does not refuse values (``_judged_by_config``)."""
    return _judged_by_config(gr.Slider(*args, **kwargs))


def config_number(*args: Any, **kwargs: Any) -> gr.Number:
    """A gr.Number (same arguments) whose minimum / maximum guide the page but do not refuse values."""
    return _judged_by_config(gr.Number(*args, **kwargs))


def form_value(name: str, value: Any) -> Any:
    """A TrainingConfig field's value as its form component holds it (the inverse of TrainingConfig.from_dict).

    lora_target_modules: a list; dataset_column_mapping: "field=column, ..." text; gradient_checkpointing: the
    radio's "auto" / "true" / "false"; every other field as it is.
    """
    if name == "lora_target_modules":
        return list(value)
    if name == "dataset_column_mapping":
        return ", ".join(f"{field}={column}" for field, column in value)
    if name == "gradient_checkpointing":
        return "auto" if value == "auto" else ("true" if value else "false")
    return value


def _choice_values(component: Any) -> list[Any] | None:
    """The values a Dropdown / Radio offers, or None when any value goes (custom values, or no fixed list)."""
    if getattr(component, "allow_custom_value", False) or isinstance(component, gr.CheckboxGroup):
        return None
    choices = getattr(component, "choices", None)
    if not choices:
        return None
    return [c[1] if isinstance(c, (tuple, list)) else c for c in choices]


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

    def updates_for(self, cfg: TrainingConfig, target_choices: list[str] | None = None) -> list[Any]:
        """One ``gr.update`` per component (``inputs`` order) that shows ``cfg`` in the form, all or nothing.

        A slider whose range does not hold a value the config accepts widens to it (the CLI's range is the
        config's, e.g. lora_r up to 1024, the slider's 256), so the form reproduces the config exactly.
        ``lora_target_modules`` also gets its choices: ``target_choices`` (the model's Linear modules) plus the
        config's own, since a CheckboxGroup refuses a value it does not offer.

        Raises:
            ConfigError: naming every field whose value a fixed-choice component cannot show (nothing is
                applied then: the caller returns no update).
        """
        problems: list[str] = []
        updates: list[Any] = []
        for name, component in self.components.items():
            value = form_value(name, getattr(cfg, name))
            if name == "lora_target_modules":
                choices = list(dict.fromkeys([*(target_choices or []), *value]))
                updates.append(gr.update(value=value, choices=choices))
                continue
            allowed = _choice_values(component)
            if allowed is not None and value not in allowed:
                problems.append(
                    tr("{field}: {value} is not one of this form's choices ({choices}).").format(
                        field=name, value=repr(value), choices=", ".join(map(str, allowed))
                    )
                )
                continue
            if isinstance(component, gr.Slider) and isinstance(value, (int, float)):
                low, high = component.minimum, component.maximum
                if value < low or value > high:
                    updates.append(gr.update(value=value, minimum=min(low, value), maximum=max(high, value)))
                    continue
            updates.append(gr.update(value=value))
        if problems:
            raise ConfigError(problems)
        return updates


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
        how = tr("One process: training runs inside the app.")
    elif cfg.num_processes == 0 and not cfg.accelerate_config_file:
        how = tr(
            "Auto: with several GPUs visible, `accelerate launch` of one process per GPU (the log names the "
            "strategy and why); otherwise training runs inside the app."
        )
    else:
        n = (
            tr("one per visible GPU")
            if cfg.num_processes == 0
            else tr("{n} processes").format(n=cfg.num_processes)
        )
        how = tr(
            "`accelerate launch` of {n} (gloo on a machine without CUDA); the log names the strategy chosen "
            "and why, and the GPU memory estimate per GPU."
        ).format(n=n)
    return tr("{how} Same run from a terminal: `{command}`").format(how=how, command=cli_command(cfg))


def with_request(fn: Any, signature: Any) -> Any:
    """Give a form handler ``fn(*values, request)`` the signature ``signature`` plus a trailing gr.Request
    parameter, so Gradio passes the request and names the API parameters after the fields."""
    params = [*signature.parameters.values()]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    fn.__signature__ = signature.replace(parameters=params)
    fn.__annotations__ = {"request": gr.Request}
    return fn
