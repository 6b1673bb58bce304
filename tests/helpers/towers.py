"""Tiny random checkpoints of real tower architectures, saved the way their families publish them, offline.

Audio: AST (``ASTModel`` + ``ASTFeatureExtractor``), Whisper (a whole ``WhisperModel``, as the Hub has it),
wav2vec2 / HuBERT / WavLM (+ ``Wav2Vec2FeatureExtractor``), CLAP (a whole ``ClapModel``: its HTSAT).
Text: BERT (a WordPiece ``BertTokenizer``), RoBERTa and ModernBERT (byte-level BPE), XLM-R (a Unigram
``XLMRobertaTokenizer``), an encoder-only M2M100 as SONAR's text encoder port saves it
(``M2M100Encoder`` + an ``NllbTokenizer``), T5 (``T5Tokenizer``). Tokenizers are built from the demo
corpus's words (no Hub, no sentencepiece model file). Each builder writes ``folder`` and returns it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

SAMPLING_RATE = 16000
AUDIO = ("ast", "whisper", "wav2vec2", "hubert", "wavlm", "clap")
TEXT = ("bert", "roberta", "xlm-roberta", "modernbert", "sonar", "t5")
_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
_WAV2VEC2 = dict(
    **_TEXT, conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), conv_bias=False,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=12, feat_extract_norm="layer",
    do_stable_layer_norm=True, layerdrop=0.0, mask_time_prob=0.0,
)  # fmt: skip


def _save(model: torch.nn.Module, preprocessor, folder: Path) -> Path:
    """Saves ``model`` and its feature extractor or tokenizer in ``folder``."""
    model.save_pretrained(folder)
    preprocessor.save_pretrained(folder)
    return folder


def audio_checkpoint(family: str, folder: Path, seed: int = 0) -> Path:
    """A tiny random audio checkpoint of ``family`` (ast, whisper, wav2vec2, hubert, wavlm, clap), saved in
    ``folder`` with its feature extractor."""
    torch.manual_seed(seed)
    if family == "ast":
        config = transformers.ASTConfig(
            **_TEXT, patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=16, max_length=100
        )
        extractor = transformers.ASTFeatureExtractor(
            num_mel_bins=16, max_length=100, sampling_rate=SAMPLING_RATE
        )
        return _save(transformers.ASTModel(config), extractor, folder)
    if family == "whisper":  # 1 s windows: 100 mel frames, 50 encoder positions
        config = transformers.WhisperConfig(
            vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=16,
            max_source_positions=50, max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1,
        )  # fmt: skip
        extractor = transformers.WhisperFeatureExtractor(
            feature_size=16, sampling_rate=SAMPLING_RATE, chunk_length=1
        )
        return _save(transformers.WhisperModel(config), extractor, folder)
    if family in ("wav2vec2", "hubert", "wavlm"):
        extra = {"num_buckets": 16, "max_bucket_distance": 40} if family == "wavlm" else {}
        config = transformers.AutoConfig.for_model(family, **_WAV2VEC2, **extra)
        extractor = transformers.Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SAMPLING_RATE, do_normalize=True, return_attention_mask=True
        )
        return _save(transformers.AutoModel.from_config(config), extractor, folder)
    if family == "clap":
        from modeling_supclap.model.configuration_supclap import PRESETS

        config = transformers.ClapConfig(**PRESETS["tiny"]())
        extractor = transformers.ClapFeatureExtractor(
            feature_size=16, sampling_rate=SAMPLING_RATE, hop_length=160, max_length_s=2, fft_window_size=400,
            truncation="rand_trunc", padding="repeatpad",
        )  # fmt: skip
        return _save(transformers.ClapModel(config), extractor, folder)
    raise ValueError(family)


def _words(captions: list[str]) -> list[str]:
    return list(dict.fromkeys(word.strip(".,").lower() for caption in captions for word in caption.split()))


def _bpe_file(captions: list[str], specials: list[str], folder: Path) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(captions, trainer)
    first, last = specials[0], specials[2]
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}",
        special_tokens=[(first, bpe.token_to_id(first)), (last, bpe.token_to_id(last))],
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / "bpe.json")
    bpe.save(path)
    return path


def text_checkpoint(family: str, folder: Path, captions: list[str], seed: int = 0) -> Path:
    """A tiny random text checkpoint of ``family`` (bert, roberta, xlm-roberta, modernbert, sonar, t5) with a
    tokenizer of ``captions``' words, in ``folder``."""
    torch.manual_seed(seed)
    words, chars = _words(captions), sorted(set("".join(captions).lower()))
    ids = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
    if family == "bert":
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *(f"##{c}" for c in chars)]
        tokenizer = transformers.BertTokenizer(
            vocab={token: i for i, token in enumerate(dict.fromkeys(vocab))}
        )
        model = transformers.BertModel(
            transformers.BertConfig(vocab_size=len(tokenizer), **_TEXT, max_position_embeddings=80)
        )
        return _save(model, tokenizer, folder)
    if family in ("roberta", "modernbert"):
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tokenizer = transformers.PreTrainedTokenizerFast(
            tokenizer_file=_bpe_file(captions, specials, folder), bos_token="<s>", pad_token="<pad>",
            eos_token="</s>", unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
        )  # fmt: skip
        if family == "roberta":
            config = transformers.RobertaConfig(vocab_size=300, **_TEXT, max_position_embeddings=82, **ids)
        else:
            config = transformers.ModernBertConfig(
                vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=48, max_position_embeddings=80, local_attention=16,
                global_attn_every_n_layers=2, cls_token_id=0, sep_token_id=2, **ids,
            )  # fmt: skip
        return _save(transformers.AutoModel.from_config(config), tokenizer, folder)
    pieces = (
        [("▁" + w, -1.0 - i / 100) for i, w in enumerate(words)] + [(c, -5.0) for c in chars] + [("▁", -6.0)]
    )
    if family == "xlm-roberta":
        specials = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
        tokenizer = transformers.XLMRobertaTokenizer(vocab=specials + pieces + [("<mask>", 0.0)])
        config = transformers.XLMRobertaConfig(
            vocab_size=len(tokenizer), **_TEXT, max_position_embeddings=82, **ids
        )
        return _save(transformers.XLMRobertaModel(config), tokenizer, folder)
    if family == "t5":
        tokenizer = transformers.T5Tokenizer(
            vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + pieces, extra_ids=0
        )
        config = transformers.T5Config(
            vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=37, num_layers=2, num_decoder_layers=1,
            num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=20, pad_token_id=0,
            eos_token_id=1, decoder_start_token_id=0,
        )  # fmt: skip
        return _save(transformers.T5Model(config), tokenizer, folder)
    if family == "sonar":  # SONAR's text encoder as its transformers port saves it: an M2M100Encoder
        from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder

        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for piece in ["▁", *chars, *("▁" + c for c in chars)]:
            vocab.setdefault(piece, len(vocab))
        tokenizer = transformers.NllbTokenizer(
            vocab=vocab, merges=[], src_lang="eng_Latn", extra_special_tokens=["eng_Latn", "fra_Latn"]
        )
        config = transformers.M2M100Config(
            vocab_size=len(tokenizer) + 4, d_model=32, encoder_layers=2, decoder_layers=1,
            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37,
            max_position_embeddings=80, decoder_start_token_id=2, scale_embedding=True,
            encoder_layerdrop=0.0, **ids,
        )  # fmt: skip
        return _save(M2M100Encoder(config), tokenizer, folder)
    raise ValueError(family)
