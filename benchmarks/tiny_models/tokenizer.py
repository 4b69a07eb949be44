"""Word-level tokenizers + chat templates for the embedded tiny models (easy-VQA, detail-VQA).

The vocabulary is every word of the dataset's questions and answers (easy-VQA:
both splits, so no test word is unknown; detail-VQA: its templates) plus the
role words and the special tokens each family's processor expects. Built with
`tokenizers`, wrapped as a `PreTrainedTokenizerFast` so `save_pretrained`
writes Hub-style files. detail-VQA answers digit strings ("047"): its
tokenizer is a WordPiece one whose only pieces are the digits, so a number is
one token per digit ("0", "##4", "##7") and decodes back without spaces.
"""

from __future__ import annotations

import re

# Prompt words shared by both families; role names come from the chat messages.
ROLE_WORDS = ["user", "assistant", ":"]
UNK = "[UNK]"

# One user turn = optional image item(s) then the text; assistant answers end with eos.
LLAVA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }} :"
    "{% if message['content'] is string %} {{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %} <image>{{ '\\n' }}{% elif item['type'] == 'text' %} {{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %} {{ eos_token }}{% endif %}{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\\n' }}{% endif %}"
)

# family -> (special tokens in id order, role of each)
LLAVA_SPECIALS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "image": "<image>"}
QWEN_SPECIALS = {
    "pad": "<|endoftext|>", "eos": "<|im_end|>", "im_start": "<|im_start|>", "vision_start": "<|vision_start|>",
    "image": "<|image_pad|>", "vision_end": "<|vision_end|>", "video": "<|video_pad|>",
}


def split_words(text: str) -> list[str]:
    """The pre-tokenizer's view of plain text: runs of word characters, or of punctuation."""
    return re.findall(r"\w+|[^\w\s]+", text.lower())


def easy_vqa_words() -> list[str]:
    """Sorted words of every easy-VQA question and answer (train + test)."""
    from easy_vqa import get_answers, get_test_questions, get_train_questions

    words = set(get_answers())
    for questions, _, _ in (get_train_questions(), get_test_questions()):
        for q in questions:
            words.update(split_words(q))
    return sorted(words)


def detail_vqa_words() -> list[str]:
    """Sorted words of the detail-VQA question templates and answers (digit strings excluded)."""
    from jax_pruning.eval.detail_vqa import words

    return words()


def dataset_words(data: str) -> list[str]:
    if data == "easy-vqa":
        return easy_vqa_words()
    if data == "detail-vqa":
        return detail_vqa_words()
    raise ValueError(f"data must be 'easy-vqa' or 'detail-vqa', got {data!r}")


DIGIT_PIECES = [str(d) for d in range(10)] + [f"##{d}" for d in range(10)]


def specials_of(family: str) -> dict[str, str]:
    if family == "llava_next":
        return LLAVA_SPECIALS
    if family == "qwen2_vl":
        return QWEN_SPECIALS
    raise ValueError(f"family must be 'llava_next' or 'qwen2_vl', got {family!r}")


def build_tokenizer(family: str, words: list[str] | None = None, digits: bool = False):
    """-> PreTrainedTokenizerFast (left padding) with the family's specials and chat template.

    digits: WordPiece over the words plus DIGIT_PIECES (a digit string is one token per digit); else word level.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = specials_of(family)
    words = easy_vqa_words() if words is None else list(words)
    vocab: dict[str, int] = {}
    for token in [*specials.values(), UNK, *ROLE_WORDS, *words, *(DIGIT_PIECES if digits else [])]:
        vocab.setdefault(token, len(vocab))
    if digits:
        tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK, continuing_subword_prefix="##"))
    else:
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+|[^\w\s]+ ; drops newlines
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    tok.add_special_tokens(list(specials.values()))
    kwargs = dict(tokenizer_object=tok, unk_token=UNK, pad_token=specials["pad"], eos_token=specials["eos"])
    if "bos" in specials:
        kwargs["bos_token"] = specials["bos"]
    fast = PreTrainedTokenizerFast(**kwargs)
    fast.padding_side = "left"  # batched greedy generation needs left padding
    fast.chat_template = LLAVA_CHAT_TEMPLATE if family == "llava_next" else QWEN_CHAT_TEMPLATE
    return fast


def generation_prompt_ids(tokenizer) -> list[int]:
    """Token ids the template appends for add_generation_prompt (what precedes every answer)."""
    with_prompt = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                                add_generation_prompt=True)
    without = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    if not with_prompt.startswith(without):
        raise ValueError("chat template: the generation prompt is not a suffix of the user turn")
    return tokenizer(with_prompt[len(without):], add_special_tokens=False)["input_ids"]
