"""Trainability claims of Schoenholz et al. 2017 (001): figs. 5-8 (sec. 5 and appendix 7.10)."""

from __future__ import annotations

from deepprop.report import trainability as tr
from deepprop.report.context import Context
from deepprop.report.registry import Claim, Measurement, register
from deepprop.report.verdict import Tolerance

PAPER = "Schoenholz et al. 2017"
SIX_XI = {
    "fraction_6xi_c": Tolerance("at_least", 0.2, "'trainable when L <~ 6 xi_c': at least 80% of the grid cells "
                                "on the side of 6 xi_c that their accuracy puts them"),
    "fitted_multiple": Tolerance("rel", 0.5, "the boundary is drawn by eye at 6 xi_c; a best-fit multiple within "
                                 "a factor 1.5 (3-9) reads as the same law"),
}
SIX_PAPER = {"fraction_6xi_c": 1.0, "fitted_multiple": 6.0}
TRAIN_SIZES = {t: dict(tr.GRID[t]) for t in tr.GRID}


def _steps(ctx: Context, which: str) -> int:
    b = tr.budgets(ctx)
    return {"sgd-200": {"smoke": 20, "quick": 200, "paper": 200}[ctx.tier], "sgd-long": b[-1],
            "rmsprop": b[1], "cifar10": {"smoke": 20, "quick": 200, "paper": 2000}[ctx.tier]}[which]


def _fig5(which: str):
    def run(ctx: Context) -> Measurement:
        dataset = None
        if which == "cifar10":
            missing = ctx.cifar_missing()
            if missing:
                return Measurement(not_run=missing)
            dataset = "cifar10"
        opt = "rmsprop" if which == "rmsprop" else "sgd"
        out = tr.run_grid(ctx, optimizer=opt, steps=_steps(ctx, which), dataset=dataset)
        return Measurement(ours=dict(out.summary), figure=[tr.heatmap(ctx, out)], data=[tr.save_cells(ctx, out)],
                           note=out.note)
    return run


FIG5 = {
    "sgd-200": ("200 steps of SGD on MNIST", "Fig. 5a: accuracy after 200 SGD steps on MNIST over (sigma_w^2, L), "
                "grey dashed n xi_c for n = 1..6; the trained region ends near 6 xi_c."),
    "sgd-long": ("a long SGD run (14000 steps) on MNIST", "Fig. 5c: after 14000 SGD steps on MNIST the trainable "
                 "region still follows the white dashed 6 xi_c."),
    "rmsprop": ("300 steps of RMSProp on MNIST", "Fig. 5d: after 300 RMSProp steps on MNIST, bounded by 6 xi_c."),
    "cifar10": ("2000 steps of SGD on CIFAR-10", "Fig. 5b: after 2000 SGD steps on CIFAR-10, bounded by 6 xi_c."),
}
for key, (what, says) in FIG5.items():
    register(Claim(
        f"001-fig5/{key}", f"{PAPER}, fig. 5 and sec. 5",
        f"After {what}, tanh networks (sigma_b^2 = 0.05) train when L <~ 6 xi_c and not beyond.",
        says, SIX_PAPER, SIX_XI, TRAIN_SIZES, _fig5(key)))


def _fig6(rho: float):
    def run(ctx: Context) -> Measurement:
        out = tr.run_grid(ctx, optimizer="sgd", steps=_steps(ctx, "sgd-200"), keep_rates=(rho,))
        return Measurement(ours=dict(out.summary), figure=[tr.heatmap(ctx, out)], data=[tr.save_cells(ctx, out)],
                           note=out.note + f", dropout keep rate {rho:g}")
    return run


for rho in (0.99, 0.98, 0.94):
    register(Claim(
        f"001-fig6/rho-{rho:g}", f"{PAPER}, fig. 6",
        f"With dropout keep rate rho = {rho:g}, the trainable depth is bounded and follows 6 xi_c "
        "(finite for rho < 1).",
        f"Fig. 6: accuracy after SGD on MNIST with rho = {rho:g}; even modest dropout bounds the trainable depth "
        "(about L = 100) and 6 xi_c predicts it.",
        SIX_PAPER, SIX_XI, TRAIN_SIZES, _fig6(rho)))


def _budget_claim(optimizer: str):
    def run(ctx: Context) -> Measurement:
        ours: dict[str, float] = {}
        figs, data, note = [], [], ""
        for steps in tr.budgets(ctx):
            out = tr.run_grid(ctx, optimizer=optimizer, steps=steps)
            ours.update(tr.summary_keys({k: out.summary[k] for k in ("fitted_multiple", "fraction_6xi_c",
                                                                     "best_accuracy")}, f"_steps_{steps}"))
            figs.append(tr.heatmap(ctx, out, f"steps-{steps}"))
            data.append(tr.save_cells(ctx, out, f"steps-{steps}"))
            note = out.note.rsplit(f"{optimizer} {steps} steps", 1)[0] + f"{optimizer} budgets {tr.budgets(ctx)}"
        ours["multiple_spread"] = tr.spread([v for k, v in ours.items() if k.startswith("fitted_multiple")])
        return Measurement(ours=ours, figure=figs, data=data, note=note)
    return run


for fig, opt, lr in (("001-fig7", "sgd", "SGD with learning rate 1e-3"), ("001-fig8", "rmsprop",
                                                                           "RMSProp with learning rate 1e-5")):
    register(Claim(
        fig, f"{PAPER}, fig. {fig[-1]} (appendix 7.10) and sec. 5: 'no obvious dependence on ... duration of training'",
        f"With {opt.upper() if opt == 'sgd' else 'RMSProp'}, the trainable-depth boundary, as a multiple of xi_c, "
        "has no obvious dependence on the duration of training (45 to 13780 steps).",
        f"Fig. {fig[-1]}: training accuracy on MNIST after (a) 45 (b) 304 (c) 2048 (d) 13780 steps of {lr}.",
        {"multiple_spread": 1.0},
        {"multiple_spread": Tolerance("at_most", 1.0, "'no obvious dependence': the fitted multiple changes by "
                                      "less than a factor 2 across budgets")},
        TRAIN_SIZES, _budget_claim(opt)))
