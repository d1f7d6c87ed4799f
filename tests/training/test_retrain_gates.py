"""The loop's gates on hand numbers: never a worse challenger, and a book that does not lurch."""

from training.retrain import loop_gates

BOOK = {"rows": 1000, "mean_pd_shift": 0.004, "band_change_share": 0.08, "band_worse_share": 0.05}
LIMITS = dict(min_auc_uplift=0.0, max_mean_pd_shift=0.02, max_band_worse_share=0.2)


def _bt(champion_auc: float, challenger_auc: float) -> dict:
    return {"rows": 1000, "champion": {"auc": champion_auc}, "challenger": {"auc": challenger_auc}}


def test_a_challenger_worse_than_the_champion_is_refused_even_within_the_manual_margin():
    # 0.8378 vs 0.8422: a promotion the old loop made (the manual gate allows a 0.01 margin)
    gates = {g.name: g for g in loop_gates(_bt(0.8422, 0.8378), BOOK, **LIMITS)}
    assert not gates["auc-uplift"].passed
    assert abs(gates["auc-uplift"].shortfall - 0.0044) < 1e-12
    assert all(g.passed for g in loop_gates(_bt(0.8378, 0.8422), BOOK, **LIMITS))


def test_a_book_that_would_lurch_is_refused():
    lurch = {**BOOK, "mean_pd_shift": -0.03, "band_change_share": 0.5, "band_worse_share": 0.35}
    gates = {g.name: g for g in loop_gates(_bt(0.80, 0.82), lurch, **LIMITS)}
    assert gates["auc-uplift"].passed
    assert not gates["pd-shift"].passed and abs(gates["pd-shift"].shortfall - 0.01) < 1e-12
    assert not gates["band-worse"].passed and abs(gates["band-worse"].shortfall - 0.15) < 1e-12
    # many users moving to a better band is no lurch
    better = {**BOOK, "band_change_share": 0.45, "band_worse_share": 0.1}
    assert all(g.passed for g in loop_gates(_bt(0.80, 0.82), better, **LIMITS))
