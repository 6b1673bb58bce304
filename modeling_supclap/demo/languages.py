"""Caption grammars of the demo corpus in seven languages (``--demo_languages``).

No machine translation is reachable offline, so each language has a small grammar written by hand: its
nouns for the ten event types, its words for count, pitch, loudness, duration and (chirps) direction,
how they agree, and sentence frames for one to three segments in order. Every language describes the
same facts as the English captions of ``demo_corpus.py`` (which stay as they are: English captions of a
multilingual corpus equal those of the English-only one), with its own paraphrases, so that a model
must read each language to match the audio. Two of the seven are non-Latin scripts with no word
spaces (Chinese, Japanese) and one is Cyrillic with case agreement after numerals (Russian).

Agreement is kept simple and correct: French and Spanish nouns are all masculine (adjectives after
the noun, singular or plural); German adjectives stand in apposition, where they do not inflect
("zwei Pfiffe, hoch, laut und kurz"); Russian numerals 2 and 3 take the genitive singular noun and
genitive plural adjectives ("два громких коротких стука"); Chinese and Japanese use a counter ("两声",
"2回の").

``ZERO_SHOT_TEMPLATES`` holds a prompt and the label names per language, as the ``--zero_shot_templates``
JSON file expects them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEMO_LANGUAGES", "ZERO_SHOT_TEMPLATES", "render_caption"]


@dataclass(frozen=True)
class _Grammar:
    # label -> [(singular form, form after 2 and 3)]: the first is the label's name in zero-shot prompts.
    nouns: dict[str, list[tuple[str, str]]]
    # attribute value -> [(form with 1, form with 2 and 3)], for pitch, loudness, duration, direction.
    adjectives: dict[str, list[tuple[str, str]]]
    counts: dict[int, list[str]]  # count -> words; "{noun}" marks where a counter goes after the noun
    phrase: Callable[[np.random.Generator, str, str, list[str]], str]  # (rng, count, noun, adjectives)
    frames: dict[int, list[str]]
    full_stop: str = "."
    capitalize: bool = True


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _join(words: list[str], conjunction: str, comma: str = ", ") -> str:
    return words[0] if len(words) == 1 else comma.join(words[:-1]) + f" {conjunction} " + words[-1]


# --------------------------------------------------------------------------------------------------
# French: masculine nouns, adjectives after the noun
# --------------------------------------------------------------------------------------------------


def _french_phrase(rng: np.random.Generator, count: str, noun: str, adjectives: list[str]) -> str:
    if int(rng.integers(2)):
        return f"{count} {noun} {_join(adjectives, 'et')}"
    return f"{count} {noun}, {_join(adjectives, 'et')}"


_FRENCH = _Grammar(
    nouns={
        "beep": [("bip", "bips"), ("bip électronique", "bips électroniques")],
        "hum": [("bourdonnement", "bourdonnements"), ("ronronnement", "ronronnements")],
        "chirp": [("glissando", "glissandos"), ("balayage", "balayages")],
        "click train": [("train de clics", "trains de clics"), ("cliquetis", "cliquetis")],
        "noise burst": [("souffle", "souffles"), ("éclat de bruit", "éclats de bruit")],
        "buzz": [("vrombissement", "vrombissements"), ("grésillement", "grésillements")],
        "knock": [("coup", "coups"), ("cognement", "cognements")],
        "whistle": [("sifflement", "sifflements"), ("coup de sifflet", "coups de sifflet")],
        "bell ring": [("tintement de cloche", "tintements de cloche"), ("carillon", "carillons")],
        "dog-like bark": [("aboiement", "aboiements"), ("jappement", "jappements")],
    },
    adjectives={
        "low": [("grave", "graves"), ("sourd", "sourds")],
        "high": [("aigu", "aigus"), ("strident", "stridents")],
        "quiet": [("faible", "faibles"), ("doux", "doux")],
        "loud": [("fort", "forts"), ("puissant", "puissants")],
        "short": [("court", "courts"), ("bref", "brefs")],
        "long": [("long", "longs"), ("prolongé", "prolongés")],
        "up": [("montant", "montants"), ("ascendant", "ascendants")],
        "down": [("descendant", "descendants")],
    },
    counts={1: ["un", "un seul"], 2: ["deux", "une paire de"], 3: ["trois", "une série de trois"]},
    phrase=_french_phrase,
    frames={
        1: ["{s1}", "on entend {s1}", "enregistrement : {s1}"],
        2: ["{s1}, puis {s2}", "d'abord {s1}, puis {s2}", "{s2} après {s1}", "{s1} et ensuite {s2}"],
        3: [
            "{s1}, puis {s2}, puis {s3}",
            "d'abord {s1}, ensuite {s2} et enfin {s3}",
            "{s1}, {s2} et enfin {s3}",
            "{s3} à la fin, après {s1} et {s2}",
        ],
    },
)

# --------------------------------------------------------------------------------------------------
# German: adjectives in apposition (uninflected); "ein" / "eine" by gender
# --------------------------------------------------------------------------------------------------


def _german_phrase(rng: np.random.Generator, count: str, noun: str, adjectives: list[str]) -> str:
    if int(rng.integers(2)):
        return f"{count} {noun}, {_join(adjectives, 'und')}"
    return f"{count} {noun}: {_join(adjectives, 'und')}"


# Feminine nouns take "eine" for one; the rest of the grammar needs no gender.
_GERMAN_FEMININE = {"Klickfolge", "Klickserie"}
_GERMAN = _Grammar(
    nouns={
        "beep": [("Piepton", "Pieptöne"), ("Signalton", "Signaltöne")],
        "hum": [("Brummton", "Brummtöne"), ("Brummgeräusch", "Brummgeräusche")],
        "chirp": [("Gleitton", "Gleittöne"), ("Sweep", "Sweeps")],
        "click train": [("Klickfolge", "Klickfolgen"), ("Klickserie", "Klickserien")],
        "noise burst": [("Rauschstoß", "Rauschstöße"), ("Rauschimpuls", "Rauschimpulse")],
        "buzz": [("Summton", "Summtöne"), ("Schnarrton", "Schnarrtöne")],
        "knock": [("Klopfgeräusch", "Klopfgeräusche"), ("Klopfer", "Klopfer")],
        "whistle": [("Pfiff", "Pfiffe"), ("Pfeifton", "Pfeiftöne")],
        "bell ring": [("Glockenschlag", "Glockenschläge"), ("Glockenton", "Glockentöne")],
        "dog-like bark": [("Bellgeräusch", "Bellgeräusche"), ("Bellton", "Belltöne")],
    },
    adjectives={
        "low": [("tief", "tief"), ("dumpf", "dumpf")],
        "high": [("hoch", "hoch"), ("schrill", "schrill")],
        "quiet": [("leise", "leise"), ("schwach", "schwach")],
        "loud": [("laut", "laut"), ("kräftig", "kräftig")],
        "short": [("kurz", "kurz"), ("knapp", "knapp")],
        "long": [("lang", "lang"), ("langgezogen", "langgezogen")],
        "up": [("steigend", "steigend"), ("aufsteigend", "aufsteigend")],
        "down": [("fallend", "fallend"), ("absteigend", "absteigend")],
    },
    counts={1: ["ein", "genau ein"], 2: ["zwei"], 3: ["drei"]},
    phrase=_german_phrase,
    frames={
        1: ["{s1}", "zu hören: {s1}", "Aufnahme: {s1}"],
        2: ["{s1}, dann {s2}", "zuerst {s1}, danach {s2}", "{s1} und anschließend {s2}"],
        3: [
            "{s1}, dann {s2}, dann {s3}",
            "zuerst {s1}, danach {s2} und zuletzt {s3}",
            "{s1}, {s2} und schließlich {s3}",
        ],
    },
)

# --------------------------------------------------------------------------------------------------
# Spanish: masculine nouns, adjectives after the noun
# --------------------------------------------------------------------------------------------------


def _spanish_phrase(rng: np.random.Generator, count: str, noun: str, adjectives: list[str]) -> str:
    if int(rng.integers(2)) or len(adjectives) < 3:
        return f"{count} {noun} {_join(adjectives, 'y')}"
    return f"{count} {noun} {adjectives[0]} y {adjectives[1]}, {', '.join(adjectives[2:])}"


_SPANISH = _Grammar(
    nouns={
        "beep": [("pitido", "pitidos"), ("bip electrónico", "bips electrónicos")],
        "hum": [("murmullo", "murmullos"), ("ronroneo", "ronroneos")],
        "chirp": [("barrido", "barridos"), ("glissando", "glissandos")],
        "click train": [("tren de clics", "trenes de clics"), ("chasquido repetido", "chasquidos repetidos")],
        "noise burst": [("estallido de ruido", "estallidos de ruido"), ("soplido", "soplidos")],
        "buzz": [("zumbido", "zumbidos"), ("chisporroteo", "chisporroteos")],
        "knock": [("golpe", "golpes"), ("toque", "toques")],
        "whistle": [("silbido", "silbidos"), ("pitido de silbato", "pitidos de silbato")],
        "bell ring": [("tañido de campana", "tañidos de campana"), ("campanazo", "campanazos")],
        "dog-like bark": [("ladrido", "ladridos"), ("sonido de ladrido", "sonidos de ladrido")],
    },
    adjectives={
        "low": [("grave", "graves"), ("profundo", "profundos")],
        "high": [("agudo", "agudos"), ("estridente", "estridentes")],
        "quiet": [("suave", "suaves"), ("débil", "débiles")],
        "loud": [("fuerte", "fuertes"), ("potente", "potentes")],
        "short": [("corto", "cortos"), ("breve", "breves")],
        "long": [("largo", "largos"), ("prolongado", "prolongados")],
        "up": [("ascendente", "ascendentes")],
        "down": [("descendente", "descendentes")],
    },
    counts={1: ["un", "un solo"], 2: ["dos", "un par de"], 3: ["tres", "una serie de tres"]},
    phrase=_spanish_phrase,
    frames={
        1: ["{s1}", "grabación de {s1}", "se percibe claramente: {s1}"],
        2: ["{s1}, luego {s2}", "primero {s1}, después {s2}", "{s1} y después {s2}", "{s2} tras {s1}"],
        3: [
            "{s1}, luego {s2}, luego {s3}",
            "primero {s1}, después {s2} y por último {s3}",
            "{s1}, {s2} y finalmente {s3}",
        ],
    },
)

# --------------------------------------------------------------------------------------------------
# Russian: after 2 and 3, the noun in the genitive singular and its adjectives in the genitive plural
# --------------------------------------------------------------------------------------------------


def _russian_phrase(rng: np.random.Generator, count: str, noun: str, adjectives: list[str]) -> str:
    if int(rng.integers(2)) or len(adjectives) < 2:
        return f"{count} {' '.join(adjectives)} {noun}"
    return f"{count} {adjectives[0]} и {' '.join(adjectives[1:])} {noun}"


_RUSSIAN = _Grammar(
    nouns={
        "beep": [("писк", "писка"), ("сигнал", "сигнала")],
        "hum": [("гул", "гула"), ("рокот", "рокота")],
        "chirp": [("скользящий тон", "скользящих тона"), ("звуковой перелив", "звуковых перелива")],
        "click train": [("треск", "треска"), ("стрекот", "стрекота")],
        "noise burst": [("шумовой всплеск", "шумовых всплеска"), ("шорох", "шороха")],
        "buzz": [("гудок", "гудка"), ("зуммер", "зуммера")],
        "knock": [("стук", "стука"), ("удар", "удара")],
        "whistle": [("свист", "свиста"), ("посвист", "посвиста")],
        "bell ring": [("звон колокола", "звона колокола"), ("колокольный звон", "колокольных звона")],
        "dog-like bark": [("лай", "лая"), ("лающий звук", "лающих звука")],
    },
    adjectives={
        "low": [("низкий", "низких"), ("глухой", "глухих")],
        "high": [("высокий", "высоких"), ("пронзительный", "пронзительных")],
        "quiet": [("тихий", "тихих"), ("слабый", "слабых")],
        "loud": [("громкий", "громких"), ("сильный", "сильных")],
        "short": [("короткий", "коротких"), ("краткий", "кратких")],
        "long": [("длинный", "длинных"), ("протяжный", "протяжных")],
        "up": [("восходящий", "восходящих")],
        "down": [("нисходящий", "нисходящих")],
    },
    counts={1: ["один", "одиночный"], 2: ["два"], 3: ["три"]},
    phrase=_russian_phrase,
    frames={
        1: ["{s1}", "слышен звук: {s1}", "запись: {s1}"],
        2: ["{s1}, затем {s2}", "сначала {s1}, потом {s2}", "{s1}, а затем {s2}"],
        3: [
            "{s1}, затем {s2}, затем {s3}",
            "сначала {s1}, потом {s2} и наконец {s3}",
            "{s1}, {s2} и в конце {s3}",
        ],
    },
)

# --------------------------------------------------------------------------------------------------
# Chinese: counter 声, no spaces, 的 before the noun
# --------------------------------------------------------------------------------------------------


def _chinese_phrase(rng: np.random.Generator, count: str, noun: str, adjectives: list[str]) -> str:
    shape = int(rng.integers(3))
    if shape == 0:
        return f"{count}{'、'.join(adjectives)}的{noun}"
    if shape == 1 and len(adjectives) > 1:
        return f"{count}{'而'.join(adjectives[:2])}的{''.join(a + '的' for a in adjectives[2:])}{noun}"
    return f"{count}{noun}，{'、'.join(adjectives)}"


_CHINESE = _Grammar(
    nouns={
        "beep": [("哔声", "哔声"), ("电子提示音", "电子提示音")],
        "hum": [("嗡嗡声", "嗡嗡声"), ("低鸣声", "低鸣声")],
        "chirp": [("滑音", "滑音"), ("扫频音", "扫频音")],
        "click train": [("连续咔嗒声", "连续咔嗒声"), ("一串咔嗒声", "一串咔嗒声")],
        "noise burst": [("噪声", "噪声"), ("嘶嘶声", "嘶嘶声")],
        "buzz": [("蜂鸣声", "蜂鸣声"), ("嗡鸣声", "嗡鸣声")],
        "knock": [("敲击声", "敲击声"), ("敲门声", "敲门声")],
        "whistle": [("口哨声", "口哨声"), ("哨声", "哨声")],
        "bell ring": [("铃声", "铃声"), ("钟声", "钟声")],
        "dog-like bark": [("狗叫声", "狗叫声"), ("犬吠声", "犬吠声")],
    },
    adjectives={
        "low": [("低沉", "低沉"), ("低音", "低音")],
        "high": [("尖锐", "尖锐"), ("高音", "高音")],
        "quiet": [("轻柔", "轻柔"), ("微弱", "微弱")],
        "loud": [("响亮", "响亮"), ("强烈", "强烈")],
        "short": [("短促", "短促"), ("简短", "简短")],
        "long": [("悠长", "悠长"), ("持续", "持续")],
        "up": [("上升", "上升")],
        "down": [("下降", "下降")],
    },
    counts={1: ["一声", "单独一声"], 2: ["两声", "连续两声"], 3: ["三声", "连续三声"]},
    phrase=_chinese_phrase,
    frames={
        1: ["{s1}", "可以听到{s1}", "录音中有{s1}"],
        2: ["{s1}，然后是{s2}", "先是{s1}，接着是{s2}", "{s1}之后是{s2}", "{s1}，随后传来{s2}"],
        3: ["{s1}，然后是{s2}，最后是{s3}", "先是{s1}，接着是{s2}，最后是{s3}", "{s1}、{s2}，最后是{s3}"],
    },
    full_stop="。",
    capitalize=False,
)

# --------------------------------------------------------------------------------------------------
# Japanese: counter 回 before ("2回の…") or after ("…が2回") the noun phrase
# --------------------------------------------------------------------------------------------------


def _japanese_phrase(rng: np.random.Generator, count: str, noun: str, adjectives: list[str]) -> str:
    if int(rng.integers(2)):
        return f"{count}の{''.join(adjectives)}{noun}"
    return f"{''.join(adjectives)}{noun}が{count}"


_JAPANESE = _Grammar(
    nouns={
        "beep": [("ビープ音", "ビープ音"), ("電子音", "電子音")],
        "hum": [("ハム音", "ハム音"), ("うなり音", "うなり音")],
        "chirp": [("チャープ音", "チャープ音"), ("スイープ音", "スイープ音")],
        "click train": [
            ("連続したクリック音", "連続したクリック音"),
            ("クリック音の連続", "クリック音の連続"),
        ],
        "noise burst": [("ノイズバースト", "ノイズバースト"), ("ザーという雑音", "ザーという雑音")],
        "buzz": [("ブザー音", "ブザー音"), ("ブーンという音", "ブーンという音")],
        "knock": [("ノック音", "ノック音"), ("叩く音", "叩く音")],
        "whistle": [("口笛の音", "口笛の音"), ("笛の音", "笛の音")],
        "bell ring": [("鐘の音", "鐘の音"), ("ベルの音", "ベルの音")],
        "dog-like bark": [("犬の鳴き声のような音", "犬の鳴き声のような音"), ("吠え声", "吠え声")],
    },
    adjectives={
        "low": [("低い", "低い"), ("低音の", "低音の")],
        "high": [("高い", "高い"), ("甲高い", "甲高い")],
        "quiet": [("小さな", "小さな"), ("かすかな", "かすかな")],
        "loud": [("大きな", "大きな"), ("力強い", "力強い")],
        "short": [("短い", "短い"), ("短めの", "短めの")],
        "long": [("長い", "長い"), ("長く続く", "長く続く")],
        "up": [("上昇する", "上昇する")],
        "down": [("下降する", "下降する")],
    },
    counts={1: ["1回", "一度"], 2: ["2回", "二度"], 3: ["3回", "三度"]},
    phrase=_japanese_phrase,
    frames={
        1: ["{s1}", "聞こえるのは{s1}", "録音：{s1}"],
        2: ["{s1}、その後{s2}", "まず{s1}、次に{s2}", "{s1}、続いて{s2}"],
        3: ["{s1}、その後{s2}、最後に{s3}", "まず{s1}、次に{s2}、最後に{s3}", "{s1}、{s2}、そして{s3}"],
    },
    full_stop="。",
    capitalize=False,
)

_GRAMMARS: dict[str, _Grammar] = {
    "fr": _FRENCH,
    "de": _GERMAN,
    "es": _SPANISH,
    "ru": _RUSSIAN,
    "zh": _CHINESE,
    "ja": _JAPANESE,
}
# English is demo_corpus.py's own grammar.
DEMO_LANGUAGES: tuple[str, ...] = ("en", *_GRAMMARS)


def _segment_phrase(grammar: _Grammar, rng: np.random.Generator, segment: Any) -> str:
    plural = segment.count > 1
    singular, counted = _pick(rng, grammar.nouns[segment.label])
    noun = counted if plural else singular
    count = _pick(rng, grammar.counts[segment.count])
    if grammar is _GERMAN and segment.count == 1 and noun in _GERMAN_FEMININE:
        count += "e"  # eine / genau eine
    attributes = [segment.pitch, segment.loudness, segment.duration]
    if segment.label == "chirp":
        attributes.insert(0, segment.direction)
    order = rng.permutation(len(attributes))
    adjectives = [_pick(rng, grammar.adjectives[attributes[i]])[int(plural)] for i in order]
    return grammar.phrase(rng, count, noun, adjectives)


def render_caption(language: str, rng: np.random.Generator, segments: Sequence[Any]) -> str:
    """One caption of ``segments`` (``demo_corpus._Segment``) in ``language`` (not English)."""
    grammar = _GRAMMARS[language]
    phrases = {f"s{i + 1}": _segment_phrase(grammar, rng, s) for i, s in enumerate(segments)}
    text = _pick(rng, grammar.frames[len(segments)]).format(**phrases)
    if grammar is _FRENCH:
        text = text.replace(" de un ", " d'un ").replace(" de une ", " d'une ")
    if grammar.capitalize:
        text = text[0].upper() + text[1:]
    return text + grammar.full_stop if rng.random() < 0.5 else text


def _zero_shot_templates() -> dict[str, Any]:
    prompts = {
        "fr": "C'est le son d'un {label}.",
        "de": "Das ist ein Geräusch: {label}.",
        "es": "Es el sonido de un {label}.",
        "ru": "Это звук: {label}.",
        "zh": "这是{label}。",
        "ja": "これは{label}です。",
    }
    templates: dict[str, Any] = {"en": "This is a sound of {label}."}
    for language, grammar in _GRAMMARS.items():
        labels = {label: forms[0][0] for label, forms in grammar.nouns.items()}
        templates[language] = {"template": prompts[language], "labels": labels}
    return templates


ZERO_SHOT_TEMPLATES: dict[str, Any] = _zero_shot_templates()
