"""The model card (``README.md``) of an exported model, in the Hugging Face model-card format.

YAML front matter (``language``, ``license``, ``library_name``, ``tags``, ``base_model`` when known,
``pipeline_tag``), then: the start model, the training data and languages, the objective and its non-default flags,
where the model is read, evaluation tables (``export-hf --results``), licences, how to load it, provenance.  Every
fact comes from a file the export read (the checkpoint's config, ``conversion.json``, the ``prepare`` manifest, the
results files; gathered by :mod:`.card_facts`); what no file says is written as "unknown", never guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from translit_plugin.core.use_settings import UseSetting

from .card_facts import (
    ResultsTables,
    TrainingData,
    base_model_id,
    markdown_table,
    non_default_flags,
    start_licence,
    training_data,
)


# ---------------------------------------------------------------------------------------------------------- card
@dataclass
class CardFacts:
    """Everything the card states (gathered by the export)."""

    name: str
    architecture: str
    head: str
    num_layers: int
    hidden: int
    vocab: int
    checkpoint: str
    num_updates: int | None
    conversion: dict | None
    lineage_how: list[str]
    cfg: object
    use: UseSetting | None
    st: dict
    results: list[ResultsTables] = field(default_factory=list)


def _yaml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def _language_codes(langs) -> list[str]:
    return sorted({lang.split("_")[0] for lang in langs if re.fullmatch(r"[a-z]{2,3}(_[A-Z][a-z]{3})?", lang)})


def render(facts: CardFacts) -> str:
    """The card's text."""
    lic_id, lic_text = start_licence(facts.conversion)
    base = base_model_id(facts.conversion)
    trained = bool(facts.num_updates) and facts.cfg is not None
    data = training_data(facts.cfg) if trained else TrainingData()
    st_written = bool(facts.st.get("written"))
    mlm = facts.architecture.endswith("ForMaskedLM")
    library = "sentence-transformers" if st_written else "transformers"
    pipeline = "sentence-similarity" if st_written else ("fill-mask" if mlm else "feature-extraction")
    tags = ["translit-ppa", "transliteration", "uroman", "xlm-roberta", "fairseq"]
    tags += ["sentence-transformers", "feature-extraction"] if st_written else []
    fm = ["---"]
    codes = _language_codes(data.languages)
    if codes:
        fm += ["language:"] + [f"- {c}" for c in codes]
    fm += [f"license: {lic_id}", f"library_name: {library}", "tags:"] + [f"- {t}" for t in tags]
    if base:
        fm.append(f"base_model: {_yaml_str(base)}")
    fm += [f"pipeline_tag: {pipeline}", "---", ""]

    src = facts.conversion or {}
    start_name = base or src.get("source") or "unknown"
    lines = [f"# {facts.name}", ""]
    how = (f", post-trained from {start_name} with transliteration-based alignment (translit-ppa: original-script "
           "text paired with its uroman romanisation)." if trained else " (a converted model, not post-trained).")
    lines.append(f"An XLM-R-architecture encoder ({facts.num_layers} layers, hidden size {facts.hidden}, "
                 f"{facts.vocab:,} vocabulary entries) exported by `translit-ppa export-hf` from the fairseq "
                 f"checkpoint `{facts.checkpoint}`{how}")
    lines += ["", "## Start model", ""]
    rows = [["source", f"`{src.get('source', 'unknown')}`"], ["base model (hub id)", base or "unknown"],
            ["architecture exported", f"`{facts.architecture}`"], ["LM head", facts.head],
            ["licence", lic_text]]  # fmt: skip
    if src.get("source_format"):
        rows.insert(1, ["format", src["source_format"]])
    lines += [markdown_table(["", ""], rows), ""]
    if facts.lineage_how:
        lines += ["How the start model was found: " + "; ".join(facts.lineage_how) + ".", ""]

    lines += ["## Training", ""]
    if not trained:
        lines += ["None recorded: the checkpoint has 0 updates (a converted or trimmed start model)." if
                  facts.num_updates == 0 else "Unknown: the checkpoint records no update count.", ""]  # fmt: skip
    else:
        lines += [f"- updates: {facts.num_updates}", f"- data: `{data.data}`" +
                  (f" (prepare manifest `{data.manifest}`)" if data.manifest else " (no prepare manifest found)")]
        if data.languages:
            lines += ["", markdown_table(["language", "training pairs"],
                                 [[lg, f"{n:,}" if n is not None else "unknown"] for lg, n in data.languages.items()])]
        else:
            lines.append("- languages: unknown")
        flags = non_default_flags(facts.cfg)
        lines += ["", "Objective and settings (the values that differ from the defaults; "
                  "`fairseq-train --user-dir translit_plugin`):", ""]
        body = []
        for section, info in flags.items():
            label = f"{section} `{info['name']}`" if info.get("name") else section
            shown = " ".join(f"{k} {json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                             for k, v in info["flags"].items()) or "(defaults)"  # fmt: skip
            body.append([label, f"`{shown}`" if info["flags"] else shown])
        lines += [markdown_table(["section", "flags"], body), ""]

    lines += ["## Where the model is read", ""]
    if facts.use is not None:
        prompts = ", ".join(f"`{k}`: {v!r}" for k, v in facts.use.prompts.items()) or "none"
        lines += [f"- use setting: {facts.use.describe(facts.num_layers)} (prompts: {prompts}; default "
                  f"{facts.use.default_prompt!r}; from {facts.use.source})"]
    else:
        lines += ["- use setting: none recorded (read it like the paper's probe: layer 8, mean pooling, no prompt)"]
    if st_written:
        lines += [f"- sentence-transformers configuration: written ({facts.st['why']}; vectors not normalised, cosine "
                  "similarity)", ""]
    else:
        lines += [f"- sentence-transformers configuration: not written ({facts.st['why']})", ""]

    lines += ["## Evaluation", ""]
    if not facts.results:
        lines += ["No results given (`translit-ppa export-hf --results FILE`).", ""]
    for res in facts.results:
        lines += [f"From `{res.path}` ({res.kind}):", ""]
        for title, table in res.tables:
            lines += [f"**{title}**", "", table, ""]

    lines += ["## Licences", "", f"- model: {lic_text}; the post-trained weights are a derivative of the start model",
              "- training data: " + ("; ".join(data.licence) if data.licence else
                                     ("unknown" if trained else "none (not post-trained)")), ""]  # fmt: skip

    lines += ["## How to load", "", "```python"]
    if st_written:
        prompt = facts.use.default_prompt if facts.use and facts.use.default_prompt else None
        arg = f", prompt_name={prompt!r}" if prompt else ""
        lines += ["from sentence_transformers import SentenceTransformer", "",
                  "model = SentenceTransformer(\"PATH\")",
                  f"vectors = model.encode([\"Καλημέρα κόσμε\", \"kalimera kosme\"]{arg})"]  # fmt: skip
        if facts.use and "passage" in facts.use.prompts:
            lines += ["# passages: model.encode(passages, prompt_name=\"passage\"), or model.encode_document(passages)",
                      "# (its \"document\" prompt is the passage prompt; encode_query uses \"query\")"]
        lines += [""]
    auto = "AutoModelForMaskedLM" if mlm else "AutoModel"
    lines += [f"from transformers import {auto}, AutoTokenizer", "",
              "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")",
              f"model = {auto}.from_pretrained(\"PATH\")", "```", ""]  # fmt: skip
    if st_written and facts.use is not None:
        pool = "take the `<s>` vector" if facts.use.pooling == "cls" else "mean-pool the last hidden states over the " \
            "attention mask (`<s>`, `</s>` and the prompt included)"
        prompt = f"put the prompt ({facts.use.prompt_text()!r}) in front of the text and " if \
            facts.use.prompt_text() else ""
        lines += [f"With transformers alone, {prompt}{pool}, as sentence-transformers does.", ""]
    lines += ["With the plugin (fairseq): `translit-ppa convert PATH MODEL_DIR`, then `from translit_plugin.hub import "
              "from_pretrained; hub = from_pretrained(\"MODEL_DIR\"); hub.embed(sentences)` (the use setting is "
              "read from `use.json`; `translit-ppa convert --use-layer/--use-pooling/--use-prompt` sets it).", ""]
    lines += ["## Provenance", "", "`translit_ppa_export.json` records the source checkpoint (path, SHA-256, updates), "
              "how the start model was found, the architecture and LM-head decision, the configuration changes and "
              "the HF/fairseq parity check.", ""]
    return "\n".join(fm + lines)
