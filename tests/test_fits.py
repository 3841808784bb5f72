"""What fits on my GPU (core.fits): every catalogue model x method, offline, and its table and chart."""

from __future__ import annotations

import pytest

from core.config import TrainingConfig
from core.fits import SIZE_BANDS, catalogue_spec, families, fit_rows
from core.vram import HEADROOM

TEXTBOOK = TrainingConfig(max_length=512, per_device_train_batch_size=4)


@pytest.fixture(scope="module")
def on_24():
    return fit_rows(TEXTBOOK, 24.0)


def test_every_catalogue_model_gets_a_row_with_a_status_per_method(on_24):
    from core.catalogue import catalogue_entries

    assert len(on_24) == len(catalogue_entries()) >= 30
    assert [r.params_b for r in on_24] == sorted(r.params_b for r in on_24)  # smallest first
    for row in on_24:
        assert set(row.cells) == {"lora", "lora8", "qlora"}
        for cell in row.cells.values():
            assert cell.status in ("fits", "tight", "does not fit", "not planned")
            if cell.status == "fits":
                assert cell.total_gib <= 24 * HEADROOM
            if cell.status in ("tight", "does not fit"):
                assert cell.total_gib > 24 * HEADROOM
        assert (row.best_method == "none") == all(c.status != "fits" for c in row.cells.values())


def test_small_models_fit_70b_does_not_on_24_gb_and_moe_is_not_planned(on_24):
    by_id = {r.hub_id: r for r in on_24}
    assert by_id["HuggingFaceTB/SmolLM2-135M-Instruct"].best_method == "lora"
    llama70 = by_id["meta-llama/Llama-2-70b-hf"]
    assert llama70.best_method == "none" and llama70.cells["qlora"].status == "does not fit"
    assert "48 GB" in llama70.best  # names the smallest catalogue GPU that would do
    mixtral = by_id["mistralai/Mixtral-8x7B-Instruct-v0.1"]
    assert all(c.status == "not planned" for c in mixtral.cells.values())
    assert "mixture-of-experts" in mixtral.best


def test_70b_qlora_fits_a_48_gb_card_and_filters_work():
    big = fit_rows(TEXTBOOK, 48.0, size_band="over 30B")
    assert big and all(r.params_b >= 30 for r in big)
    assert next(r for r in big if r.hub_id == "meta-llama/Llama-2-70b-hf").cells["qlora"].status == "fits"
    qwen = fit_rows(TEXTBOOK, 48.0, family="qwen2.5")
    assert qwen and {r.family for r in qwen} == {"qwen2.5"}
    assert "qwen2.5" in families() and families()[0] == "all families"
    assert list(SIZE_BANDS)[0] == "all sizes"


def test_catalogue_spec_needs_no_network_and_matches_the_stated_size(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = catalogue_spec("Qwen/Qwen2.5-7B-Instruct")
    assert spec.source.startswith("catalogue") and spec.hidden_size == 3584
    assert spec.num_params == pytest.approx(7.61e9, rel=0.01)


def test_table_and_chart(on_24):
    from ui.views import fits_figure, fits_frame

    frame = fits_frame(on_24)
    assert list(frame.columns)[:3] == ["model", "family", "B params"]
    assert len(frame) == len(on_24) and frame["QLoRA"].str.contains("GiB").any()
    fig = fits_figure(on_24, 24.0)
    assert len(fig.data) == 3 and {t.name for t in fig.data} == {"LoRA", "LoRA 8-bit", "QLoRA"}


def test_every_model_preset_is_the_embedded_model_or_in_the_catalogue():
    from core.catalogue import catalogue_entry
    from core.config import DEFAULT_MODEL
    from core.presets import MODEL_PRESETS

    for preset in MODEL_PRESETS:
        assert preset.model_name_or_path == DEFAULT_MODEL or catalogue_entry(preset.model_name_or_path)
