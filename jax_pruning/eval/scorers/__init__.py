"""One scorer per benchmark, each equal to lmms-eval's scoring of that task (dispatch: eval/metrics.py).

    evalai.py    the EvalAI answer processor (VQA normal forms)
    vqa.py       VQA accuracy: VQAv2, TextVQA, OK-VQA, VizWiz-VQA
    exact.py     GQA's exact match
    yes_no.py    POPE, MME
    choice.py    ScienceQA-IMG
    anls.py      DocVQA, InfographicVQA
    chartqa.py   ChartQA relaxed accuracy
    ocrbench.py  OCRBench

Each module names the lmms-eval file and commit it follows. Per-sample scores
are in [0, 1]; predictions are stripped first, as lmms-eval's harness does.
"""
