"""Plots a reviewer would accept."""


def test_training_curves_have_whole_epoch_ticks():
    import pandas as pd

    from source.plots import curve_figure, plt

    history = pd.DataFrame(
        {"epoch": [1, 2, 3, 1, 2, 3], "split": ["train"] * 3 + ["tune"] * 3, "loss": [3, 2, 1, 3.5, 2.5, 2]}
    )
    figure = curve_figure(history, "loss")
    figure.canvas.draw()
    ticks = [t for t in figure.axes[0].get_xticks() if 1 <= t <= 3]
    plt.close(figure)
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
