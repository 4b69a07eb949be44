"""build_prompt with a real transformers tokenizer: its chat template places the image item."""

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from jax_pruning.eval.prompts import build_prompt

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<img>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tokenizer(chat_template=None):
    vocab = {"[UNK]": 0, "what": 1, "?": 2}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    tok.chat_template = chat_template
    return tok


def test_chat_template_of_a_plain_tokenizer():
    prompt = build_prompt(_tokenizer(TEMPLATE), "Is there a dog? Please answer yes or no.", "pope")
    assert prompt == "<|user|><img>Is there a dog?\nPlease answer yes or no.<|end|><|assistant|>"
    prompt = build_prompt(_tokenizer(TEMPLATE), "Which one?", "multiple_choice", ["red", "blue"])
    assert prompt == ("<|user|><img>Which one?\nA. red\nB. blue\n"
                      "Answer with the option's letter from the given choices directly.<|end|><|assistant|>")


def test_without_a_template_the_image_token_leads():
    assert build_prompt(_tokenizer(), "what?", "vqa") == (
        "<image>\nwhat?\nAnswer the question using a single word or phrase.")
