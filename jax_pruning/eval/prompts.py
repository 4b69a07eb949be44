"""The prompt of each task: question + the instruction the benchmark's usual protocol adds.

The instructions are the ones LLaVA's evaluation uses (short answer for VQA,
yes/no for POPE and MME, the option letter for multiple choice), so scores are
comparable with published numbers; the tasks LLaVA does not cover (OK-VQA,
VizWiz-VQA, ChartQA, OCRBench) take lmms-eval's default post-prompt. The chat
template comes from the model's own processor files (`Processor.chat_prompt`).
"""

from __future__ import annotations

SHORT_ANSWER = "Answer the question using a single word or phrase."
YES_NO = "Please answer yes or no."
LETTER = "Answer with the option's letter from the given choices directly."
UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'.\n" + SHORT_ANSWER
SINGLE_WORD = "Answer the question with a single word."

INSTRUCTIONS = {  # one per scoring task (eval.metrics.TASKS); "" sends the question alone
    "vqa": SHORT_ANSWER,
    "exact_match": SHORT_ANSWER,
    "vqav2": SHORT_ANSWER,
    "textvqa": SHORT_ANSWER,
    "gqa": SHORT_ANSWER,
    "docvqa": SHORT_ANSWER,
    "infovqa": SHORT_ANSWER,
    "ok_vqa": UNANSWERABLE,
    "vizwiz_vqa": UNANSWERABLE,
    "chartqa": SINGLE_WORD,
    "ocrbench": "",
    "pope": YES_NO,
    "mme": YES_NO,
    "multiple_choice": LETTER,
    "scienceqa_img": LETTER,
}
CHOICE_TASKS = ("multiple_choice", "scienceqa_img")


def letters(n: int) -> list[str]:
    if not 1 <= n <= 26:
        raise ValueError(f"multiple choice needs 1..26 choices, got {n}")
    return [chr(ord("A") + i) for i in range(n)]


def question_text(question: str, task: str, choices: list[str] | None = None) -> str:
    """The user turn's text (no chat template)."""
    if task not in INSTRUCTIONS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(INSTRUCTIONS)}")
    question = question.strip()
    if task in ("pope", "mme"):  # MME questions already end with the instruction: never say it twice
        question = question.removesuffix(YES_NO).strip()
    if task in CHOICE_TASKS:
        if not choices:
            raise ValueError("a multiple-choice question needs its choices")
        options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(letters(len(choices)), choices))
        question = f"{question}\n{options}"
    return f"{question}\n{INSTRUCTIONS[task]}" if INSTRUCTIONS[task] else question


def build_prompt(processor, question: str, task: str, choices: list[str] | None = None, *,
                 video: bool = False) -> str:
    """The full prompt (chat template with one image, or with `video` one video) for a jax_pruning
    Processor, or any HF tokenizer/processor: through its `apply_chat_template` when it has a chat
    template, the image as a {"type": "image"} content item so the model's own template places it."""
    text = question_text(question, task, choices)
    if hasattr(processor, "chat_prompt"):  # jax_pruning.processing.Processor
        return processor.chat_prompt(text, video=True) if video else processor.chat_prompt(text)
    if video and not getattr(processor, "chat_template", None):
        raise ValueError("a video prompt needs the model's chat template (this processor has none)")
    if getattr(processor, "chat_template", None):
        content = [{"type": "video" if video else "image"}, {"type": "text", "text": text}]
        return processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)
    return f"{getattr(processor, 'image_token', None) or '<image>'}\n{text}"  # no template: LLaVA's plain form
