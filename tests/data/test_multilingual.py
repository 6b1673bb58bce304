"""Multilingual captions: both layouts, counted skips and clear errors, the per-pair language
draw, the seven-language demo corpus, per-language evaluation and the end-to-end command lines."""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.cli import run_in_process, tiny_train_args

from modeling_supclap.cli.evaluate import main as evaluate_main
from modeling_supclap.cli.train import main as train_main
from modeling_supclap.data.captions import choose_caption, normalize_language, parse_language_weights
from modeling_supclap.data.readers import load_records
from modeling_supclap.data.records import AudioTextRecord
from modeling_supclap.demo.corpus import DEMO_LANGUAGES, _make_clip, build_demo_corpus
from modeling_supclap.evaluation.encode import EncodedCorpus
from modeling_supclap.evaluation.metrics import compute_retrieval_metrics
from modeling_supclap.evaluation.retrieval import (
    crosslingual_consistency_results,
    per_language_retrieval,
)
from modeling_supclap.evaluation.zero_shot import load_zero_shot_templates

CJK = re.compile(r"[\u4e00-\u9fff]")
KANA = re.compile(r"[\u3040-\u30ff]")
CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def _wav(folder, name: str) -> str:
    sf.write(folder / name, np.zeros(1600, dtype=np.float32), 16000, subtype="PCM_16")
    return name


def _jsonl(folder, rows: list[dict]) -> None:
    (folder / "metadata.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )


# ---------------------------------------------------------------------------------------------------
# Layout 1: one column per language
# ---------------------------------------------------------------------------------------------------


def test_one_column_per_language_is_detected_and_each_caption_knows_its_language(tmp_path):
    rows = [
        {
            "file_name": _wav(tmp_path, f"{i}.wav"),
            "caption_en": f"dog {i}",
            "caption_fr": [f"chien {i}", "un chien"],
            "caption_zh": f"狗叫声{i}",
            "label": "dog",
        }
        for i in range(3)
    ]
    _jsonl(tmp_path, rows)
    records = load_records(tmp_path)
    assert records[0].captions == ["dog 0", "chien 0", "un chien", "狗叫声0"]
    assert records[0].languages == ["en", "fr", "fr", "zh"]
    chosen = load_records(tmp_path, caption_languages=["zh", "FR"])
    assert chosen[1].captions == ["chien 1", "un chien", "狗叫声1"]
    assert chosen[1].languages == ["fr", "fr", "zh"]


def test_a_plain_caption_column_takes_the_default_language(tmp_path):
    _jsonl(
        tmp_path, [{"file_name": _wav(tmp_path, "a.wav"), "caption": "Ein Hund", "caption_fr": "un chien"}]
    )
    (record,) = load_records(tmp_path, default_caption_language="de")
    assert record.languages == ["de", "fr"]


def test_caption_id_is_not_mistaken_for_indonesian(tmp_path):
    _jsonl(tmp_path, [{"file_name": _wav(tmp_path, "a.wav"), "caption": "a dog", "caption_id": 17}])
    (record,) = load_records(tmp_path)
    assert record.captions == ["a dog"] and record.languages == ["en"]


def test_a_missing_language_cell_is_a_counted_skip_for_that_language_only(tmp_path, caplog):
    rows = [
        {"file_name": _wav(tmp_path, "0.wav"), "caption_en": "a dog", "caption_fr": None},
        {"file_name": _wav(tmp_path, "1.wav"), "caption_en": "a cat", "caption_fr": "un chat"},
        {"file_name": _wav(tmp_path, "2.wav"), "caption_en": "a cow"},  # no caption_fr key at all
    ]
    _jsonl(tmp_path, rows)
    with caplog.at_level(logging.WARNING, logger="modeling_supclap.data"):
        records = load_records(tmp_path)
    assert [r.languages for r in records] == [["en"], ["en", "fr"], ["en"]]
    assert "skipped for that language only): fr 2" in caplog.text


def test_rows_without_any_selected_language_are_skipped_and_counted(tmp_path, caplog):
    rows = [
        {"file_name": _wav(tmp_path, "0.wav"), "caption_en": "a dog", "caption_ja": None},
        {"file_name": _wav(tmp_path, "1.wav"), "caption_en": "a cat", "caption_ja": "猫の声"},
    ]
    _jsonl(tmp_path, rows)
    with caplog.at_level(logging.WARNING, logger="modeling_supclap.data"):
        records = load_records(tmp_path, caption_languages=["ja"])
    assert [r.captions for r in records] == [["猫の声"]]
    assert "1 row(s) have no caption in any of the languages ['ja'] and are skipped" in caplog.text
    assert "metadata.jsonl line 1" in caplog.text


def test_an_empty_string_is_an_error_naming_the_row_and_column(tmp_path):
    _jsonl(
        tmp_path,
        [
            {"file_name": _wav(tmp_path, "0.wav"), "caption_en": "a dog", "caption_de": "ein Hund"},
            {"file_name": _wav(tmp_path, "1.wav"), "caption_en": "a cat", "caption_de": "  "},
        ],
    )
    with pytest.raises(ValueError, match=r"metadata\.jsonl line 2: empty caption in column 'caption_de'"):
        load_records(tmp_path)


def test_a_language_no_row_has_is_an_error_listing_those_present(tmp_path):
    _jsonl(
        tmp_path, [{"file_name": _wav(tmp_path, "0.wav"), "caption_en": "a dog", "caption_fr": "un chien"}]
    )
    with pytest.raises(ValueError, match=r"no caption in language\(s\) \['ru'\].*languages present: en, fr"):
        load_records(tmp_path, caption_languages=["en", "ru"])


def test_csv_language_columns_treat_an_empty_cell_as_missing(tmp_path, caplog):
    _wav(tmp_path, "0.wav")
    _wav(tmp_path, "1.wav")
    with open(tmp_path / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "caption_en", "caption_ru"])
        writer.writerow(["0.wav", "a dog", "собака"])
        writer.writerow(["1.wav", "a cat", ""])  # CSV has no null: an empty cell is a missing caption
    with caplog.at_level(logging.WARNING, logger="modeling_supclap.data"):
        records = load_records(tmp_path)
    assert [r.languages for r in records] == [["en", "ru"], ["en"]]
    assert "ru 1" in caplog.text


# ---------------------------------------------------------------------------------------------------
# Layout 2: one column of {language: text} mappings
# ---------------------------------------------------------------------------------------------------


def test_a_mapping_column_and_a_list_of_mappings_load_with_their_languages(tmp_path):
    first_cell = {"en": "a dog", "fr": ["un chien", "chien"], "zh_CN": "狗"}
    second_cell = [{"en": "a cat", "ja": "猫"}, {"en": "cat", "ja": None}]
    rows = [
        {"file_name": _wav(tmp_path, "0.wav"), "captions": first_cell},
        {"file_name": _wav(tmp_path, "1.wav"), "captions": second_cell},
    ]
    _jsonl(tmp_path, rows)
    first, second = load_records(tmp_path)
    assert first.captions == ["a dog", "un chien", "chien", "狗"]
    assert first.languages == ["en", "fr", "fr", "zh-cn"]
    assert second.captions == ["a cat", "猫", "cat"] and second.languages == ["en", "ja", "en"]


def test_a_mapping_in_a_csv_cell_is_read_as_json(tmp_path):
    _wav(tmp_path, "0.wav")
    with open(tmp_path / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "captions"])
        writer.writerow(["0.wav", json.dumps({"en": "a dog", "es": "un perro"}, ensure_ascii=False)])
    (record,) = load_records(tmp_path)
    assert record.captions == ["a dog", "un perro"] and record.languages == ["en", "es"]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ({"en": "a dog", "fr": ""}, r"line 1: empty caption in column 'captions', language 'fr'"),
        (
            {"en": "a dog", "french!": "chien"},
            r"line 1: caption column 'captions'.*'french!' is not a language code",
        ),
        ({"en": 3}, r"line 1: caption column 'captions', language 'en' holds int"),
        ({}, r"line 1: caption column 'captions' holds an empty mapping"),
    ],
)
def test_bad_mapping_cells_are_errors_naming_row_column_and_language(tmp_path, cell, message):
    _jsonl(tmp_path, [{"file_name": _wav(tmp_path, "0.wav"), "captions": cell}])
    with pytest.raises(ValueError, match=message):
        load_records(tmp_path)


def test_language_codes_are_normalised_and_bad_ones_named():
    assert normalize_language("pt_BR") == "pt-br"
    with pytest.raises(ValueError, match="'english' is not a language code"):
        normalize_language("english")


def test_datasets_saved_dataset_with_language_columns(tmp_path):
    from datasets import Dataset

    audio = [str(tmp_path / _wav(tmp_path, f"{i}.wav")) for i in range(2)]
    Dataset.from_dict(
        {"audio": audio, "caption_en": ["a dog", "a cat"], "caption_de": ["ein Hund", None]}
    ).save_to_disk(str(tmp_path / "saved"))
    records = load_records(tmp_path / "saved")
    assert [r.languages for r in records] == [["en", "de"], ["en"]]


# ---------------------------------------------------------------------------------------------------
# Training draws one caption per pair among the clip's languages
# ---------------------------------------------------------------------------------------------------


def test_language_draw_follows_the_weights():
    captions = ["a dog", "another dog", "un chien", "狗"]
    languages = ["en", "en", "fr", "zh"]
    generator = torch.Generator().manual_seed(0)
    drawn = Counter(choose_caption(captions, languages, generator) for _ in range(6000))
    by_language = Counter(languages[captions.index(c)] for c in drawn.elements())
    # Uniform over languages (1/3 each), then over the language's captions.
    for language in ("en", "fr", "zh"):
        assert abs(by_language[language] / 6000 - 1 / 3) < 0.03
    assert abs(drawn["a dog"] / 6000 - 1 / 6) < 0.03
    weights = parse_language_weights(["fr=0", "zh=3"])
    drawn = Counter(choose_caption(captions, languages, generator, weights) for _ in range(4000))
    assert drawn["un chien"] == 0
    assert abs(drawn["狗"] / 4000 - 0.75) < 0.03


def test_one_language_draws_as_a_monolingual_corpus_always_did():
    captions = ["a", "b", "c"]
    ours, reference = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(50):
        expected = captions[int(torch.randint(3, (1,), generator=reference))]
        assert choose_caption(captions, ["en"] * 3, ours) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (["fr"], "not LANGUAGE=WEIGHT"),
        (["fr=x"], "not a number"),
        (["fr=-1"], ">= 0"),
        (["fr=0"], "every weight is 0"),
    ],
)
def test_bad_language_weights_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_language_weights(spec)


# ---------------------------------------------------------------------------------------------------
# The seven-language demo corpus
# ---------------------------------------------------------------------------------------------------


def test_demo_clip_captions_in_seven_languages_describe_the_clip_alike():
    assert len(DEMO_LANGUAGES) >= 6
    for index in range(20):
        _, english, label = _make_clip(index, 0, 16000, 2.0)
        _, captions, same_label = _make_clip(index, 0, 16000, 2.0, DEMO_LANGUAGES)
        assert same_label == label
        assert [c["en"] for c in captions] == english  # English unchanged by the other languages
        for caption in captions:
            assert set(caption) == set(DEMO_LANGUAGES) and all(t.strip() for t in caption.values())
            assert CJK.search(caption["zh"]) and not re.search(r"[A-Za-z]", caption["zh"])
            assert KANA.search(caption["ja"])
            assert CYRILLIC.search(caption["ru"])
        for language in DEMO_LANGUAGES:  # paraphrases differ within a language
            assert len({c[language].rstrip(".。") for c in captions}) == len(captions)


def test_demo_corpus_with_languages_loads_as_a_mapping_layout_with_templates(tmp_path):
    root = build_demo_corpus(tmp_path / "corpus", num_clips=12, languages=["en", "ru", "zh"])
    records = load_records(root, split="train")
    assert set(records[0].languages) == {"en", "ru", "zh"}
    assert Counter(records[0].languages)["en"] == Counter(records[0].languages)["zh"]
    templates = load_zero_shot_templates(root / "zero_shot_templates.json")
    assert set(templates) == {"en", "ru", "zh"}
    assert templates["zh"]["labels"]["knock"] == "敲击声"
    with pytest.raises(ValueError, match="no demo grammar for \\['xx'\\]"):
        build_demo_corpus(tmp_path / "other", num_clips=12, languages=["en", "xx"])


# ---------------------------------------------------------------------------------------------------
# Per-language evaluation
# ---------------------------------------------------------------------------------------------------


def _corpus(text: torch.Tensor, audio: torch.Tensor, ids: list[int], languages: list[str]) -> EncodedCorpus:
    return EncodedCorpus(
        audio_embeds=audio,
        text_embeds=text,
        caption_audio_ids=torch.tensor(ids),
        labels=[None] * audio.shape[0],
        caption_languages=languages,
    )


def test_per_language_retrieval_scores_each_language_on_its_own_captions_and_clips():
    torch.manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    text = torch.nn.functional.normalize(torch.randn(10, 8), dim=1)
    ids = [0, 1, 2, 3, 4, 5, 0, 1, 2, 4]
    languages = ["en"] * 6 + ["fr"] * 4  # French captions for clips 0, 1, 2, 4 only
    results = per_language_retrieval(_corpus(text, audio, ids, languages))
    expected_fr = compute_retrieval_metrics(text[6:], audio[[0, 1, 2, 4]], torch.tensor([0, 1, 2, 3]))
    for key in ("t2a_R@1", "a2t_R@5", "t2a_mAP@10"):
        assert results["fr"][key] == pytest.approx(expected_fr[key])
    assert results["fr"]["num_clips"] == 4
    assert results["mean"]["t2a_R@1"] == pytest.approx(
        (results["en"]["t2a_R@1"] + results["fr"]["t2a_R@1"]) / 2
    )
    assert per_language_retrieval(_corpus(text[:6], audio, ids[:6], ["en"] * 6)) is None


def test_consistency_over_aligned_captions_is_exactly_one_for_identical_languages_and_lower_shuffled():
    torch.manual_seed(1)
    audio = torch.nn.functional.normalize(torch.randn(12, 16), dim=1)
    english = torch.nn.functional.normalize(audio + 0.3 * torch.randn(12, 16), dim=1)
    ids = list(range(12)) * 2
    same = _corpus(torch.cat([english, english]), audio, ids, ["en"] * 12 + ["de"] * 12)
    results = crosslingual_consistency_results(same)
    assert results["top1_agreement"] == 100.0 and results["rank_correlation"] == pytest.approx(1.0)
    assert results["num_aligned_captions"] == 12
    shuffled = _corpus(
        torch.cat([english, english[torch.randperm(12)]]), audio, ids, ["en"] * 12 + ["de"] * 12
    )
    lower = crosslingual_consistency_results(shuffled)
    assert lower["top1_agreement"] < 100.0 and lower["rank_correlation"] < 1.0


def test_zero_shot_templates_file_errors_name_the_language(tmp_path):
    path = tmp_path / "templates.json"
    path.write_text(json.dumps({"fr": "Le son d'un chien"}))
    with pytest.raises(ValueError, match="language 'fr' needs a template with '\\{label\\}'"):
        load_zero_shot_templates(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_zero_shot_templates(path)


# ---------------------------------------------------------------------------------------------------
# End to end: train on the multilingual demo, then evaluate the saved model
# ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_and_eval_report_every_language_and_the_card_carries_them(tmp_path):
    out = tmp_path / "run"
    languages = ["en", "fr", "de", "es", "ru", "zh", "ja"]
    args = tiny_train_args(
        tmp_path / "cache", out, "--demo_languages", *languages, "--caption_language_weights", "en=2"
    )
    proc = run_in_process(train_main, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())["test"]
    assert metrics["caption_languages"] == languages
    assert set(metrics["retrieval_per_language"]) == {*languages, "mean"}
    assert 0.0 <= metrics["crosslingual_consistency"]["top1_agreement"] <= 100.0
    assert set(metrics["zero_shot"]["per_language"]) == set(languages)
    assert "Per caption language" in proc.stdout and "| zh " in proc.stdout
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Text-to-audio R@1 (ja)" in card and "Top-1 accuracy (ru prompt)" in card
    assert json.loads((out / "config.json").read_text())["text_config"]["vocab_size"] == 2000

    corpus = next((tmp_path / "cache").glob("demo_corpus_*_en-fr-de-es-ru-zh-ja"))
    proc = run_in_process(
        evaluate_main,
        ["--model_name_or_path", str(out), "--eval_data", str(corpus),
         "--caption_languages", "zh", "ja", "--output_json", str(tmp_path / "eval.json")],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert set(evaluated["retrieval_per_language"]) == {"zh", "ja", "mean"}


@pytest.mark.slow
def test_unknown_demo_language_stops_before_any_work(tmp_path):

    args = tiny_train_args(tmp_path / "cache", tmp_path / "run", "--demo_languages", "en", "tlh")
    proc = run_in_process(train_main, args)
    assert proc.returncode != 0
    assert "no demo grammar for ['tlh']" in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_shards_keep_each_captions_language(tmp_path):
    from modeling_supclap.data.sources.shards import write_shards
    from modeling_supclap.data.sources.streaming import open_stream, stream_records

    records = [
        AudioTextRecord(
            str(tmp_path / _wav(tmp_path, f"{i}.wav")), ["a dog", "un chien"], languages=["en", "fr"]
        )
        for i in range(3)
    ]
    write_shards(records, tmp_path / "shards", shard_size=2)
    read = stream_records(open_stream(str(tmp_path / "shards")))
    assert [r.languages for r in read] == [["en", "fr"]] * 3
    only_fr = stream_records(open_stream(str(tmp_path / "shards"), caption_languages=["fr"]))
    assert [r.captions for r in only_fr] == [["un chien"]] * 3
