"""Hypothesis search (AutoInterpret): an explainer that tests its own explanations.

    propose.py   the proposer's prompt (top texts, contrast texts, hypotheses tried), parsing, de-duplication
    offline.py   the offline proposer: token-set conditions grown greedily from the activation pattern
    evaluate.py  a judge's yes/no per text -> correlation and best-threshold balanced accuracy
    stats.py     p-values (t-test), Fisher-z intervals, Holm's correction: pure numpy
    report.py    the tried hypotheses ranked, with their statistics
    loop.py      rounds of propose -> evaluate -> feed back, under a budget and a patience
    service.py   POST /explain with strategy "search": request in, response body out
"""
