"""Tiny random models with real tokenizers, built in memory for fast unit tests (no download).

The tokenizers are trained in a few milliseconds on a small built-in corpus, so they are
deterministic and behave like the real ones (special tokens, chat template, padding).
Used by ftkit.models (names ``tiny-llama``, ``tiny-bert``) and the tests.
"""
from __future__ import annotations

import functools

import torch
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Fine-tuning adapts a pretrained language model to a task.",
    "LoRA adds low-rank matrices to frozen weights.",
    "What is the capital of France? The capital of France is Paris.",
    "Please summarise the meeting notes in three bullet points.",
    "The model answered the question correctly.",
    "Data preparation comes before training and evaluation.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
    "Punctuation: , . ; : ! ? ( ) [ ] { } \" ' - _ / # @ * + = < > |",
    "json {\"name\": \"Ada\", \"age\": 36, \"city\": \"London\"}",
]
# Same turn format as SmolLM2-Instruct, so chat code paths are exercised for real.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}")


@functools.lru_cache(maxsize=None)
def _bpe_tokenizer_json() -> str:

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    return tok.to_str()


def tiny_bpe_tokenizer():
    """A byte-level BPE tokenizer (vocab 512) with SmolLM2's special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_bpe_tokenizer_json()),
                                  bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  unk_token="<|endoftext|>", pad_token="<|im_end|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_llama(seed: int = 0):
    """``(model, tokenizer)``: a 2-layer Llama (hidden 64, GQA 4/2 heads), ~0.1 M parameters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_bpe_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tok


@functools.lru_cache(maxsize=None)
def _wordpiece_tokenizer_json() -> str:

    # The vocabulary is built, not trained: WordPiece training breaks ties in a different order
    # in each process, and tests need the same ids every time. Whole words of the corpus, plus
    # every character as a word start and as a continuation (``##x``), so nothing is unknown.
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = sorted({w for text in CORPUS for w, _ in pre.pre_tokenize_str(
        normalizer.normalize_str(text))})
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + chars + ["##" + c for c in chars] + [w for w in words if len(w) > 1]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return tok.to_str()


def tiny_bert(seed: int = 0):
    """``(model, tokenizer)``: a 2-layer BERT encoder (hidden 32) with a WordPiece tokenizer."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_wordpiece_tokenizer_json()),
                                  unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=128,
                        pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return BertModel(config), tok
