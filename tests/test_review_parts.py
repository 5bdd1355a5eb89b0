"""The review queue's pure parts: the doubt of one answer, the columns and ranges of inputs, the image
a review page shows for an image-shaped input (a real PNG, read back by Pillow), and the migration
runner's tolerance of a gap in a component's step numbers (the queue is monitor step 15)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from database import migrations
from monitor import reviewscore as score
from web.reviewview import image_layout, shown_inputs


def test_the_three_measures_on_one_distribution():
    probs = [0.5, 0.3, 0.2]
    assert score.doubt(probs, "margin", 0.3) == score.Doubt(pytest.approx(0.8), "margin 0.20")
    assert score.doubt(probs, "margin", 0.2) is None  # not below the threshold
    assert score.doubt(probs, "max_probability", 0.6) == score.Doubt(0.5, "max probability 0.50")
    entropy = score.doubt(probs, "entropy", 0.9)
    assert entropy.text == "entropy 0.94" and entropy.score == pytest.approx(0.9372, abs=1e-4)


def test_the_probability_output_is_found_by_name_else_by_its_width():
    labels = ("a", "b", "c")
    assert score.probability_output({"label": {}, "probs": {"dtype": "float32"}}, labels) == "probs"
    width = {"label": {"dtype": "int64", "shape": [-1]}, "out": {"dtype": "float32", "shape": [-1, 3]}}
    assert score.probability_output(width, labels) == "out"
    assert score.probability_output({"y": {"dtype": "float32", "shape": [-1, 2]}}, labels) is None


def test_several_items_give_no_probabilities_columns_or_answer():
    assert score.probabilities({"p": [[0.5, 0.5], [0.1, 0.9]]}, "p") is None
    assert score.columns({"x": [[1, 2], [3, 4]]}, {"x": {"shape": [-1, 2]}}) is None
    assert score.answer_label({"label": [0, 1]}, None, ("a", "b")) is None
    assert score.answer_label({"label": ["b"]}, None, ("a", "b")) == "b"


def test_columns_are_named_as_drift_runs_name_them_and_ranges_span_the_reference():
    schema = {"x": {"shape": [-1, 2]}, "t": {"shape": []}}
    assert score.columns({"x": [[1.5, 2]], "t": 7}, schema) == {"x.0": 1.5, "x.1": 2.0, "t": 7.0}
    rows = [{"x.0": 1.0, "t": 5.0}, {"x.0": -2.0, "t": 9.0}]
    bounds = score.ranges(rows, {"x.0"})
    assert bounds == {"x.0": (-2.0, 1.0)}
    assert score.outside({"x.0": 0.0}, bounds) is None
    far = score.outside({"x.0": 2.5}, bounds)
    assert far == score.Doubt(0.5, "x.0 = 2.5, outside the reference's -2 to 1")


def test_an_image_shaped_input_becomes_a_png_of_its_size():
    pixels = [[[float(x * y) for x in range(10)] for y in range(8)]]  # 1 x 8 x 10, channels first
    (shown,) = shown_inputs({"image": [pixels]}, {"image": {"shape": [-1, 1, 8, 10]}})
    assert shown["rows"] == [] and shown["image"].startswith("data:image/png;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(shown["image"].split(",", 1)[1])))
    assert (png.size, png.mode) == ((10, 8), "L")
    assert png.getpixel((0, 0)) == 0 and png.getpixel((9, 7)) == 255  # scaled from min to max


def test_small_or_flat_inputs_are_tables_and_rgb_images_keep_their_colours():
    assert image_layout([4, 4]) is None and image_layout([1, 8, 8]) == (8, 8, 1, True)
    (table,) = shown_inputs({"x": [[1.0, 2.5]]}, {"x": {"shape": [-1, 2]}})
    assert table == {"name": "x", "image": None, "rows": [("x.0", "1"), ("x.1", "2.5")]}
    red = [[[255.0, 0.0, 0.0] for _ in range(8)] for _ in range(8)]  # 8 x 8 x 3, channels last
    red[0][0] = [0.0, 0.0, 0.0]
    (shown,) = shown_inputs({"rgb": red}, {"rgb": {"shape": [8, 8, 3]}})
    png = Image.open(io.BytesIO(base64.b64decode(shown["image"].split(",", 1)[1])))
    assert png.mode == "RGB" and png.getpixel((1, 0)) == (255, 0, 0) and png.getpixel((0, 0)) == (0, 0, 0)


def test_a_gap_in_step_numbers_is_no_problem_for_the_runner(tmp_path):
    """Monitor step 15 (the review queue) may be registered before 14 is: each step is applied by its
    own (component, number), whatever the others."""
    from peewee import SqliteDatabase

    db = SqliteDatabase(str(tmp_path / "gap.db"))
    ran: list[int] = []
    saved = dict(migrations.REGISTERED)
    try:
        migrations.REGISTERED.clear()
        migrations.register(
            "gappy", [(1, "one", lambda d: ran.append(1)), (3, "three", lambda d: ran.append(3))]
        )
        assert migrations.migrate(db) == ["gappy:1", "gappy:3"]
        migrations.register("gappy", [(1, "one", ran.append), (2, "two", lambda d: ran.append(2)),
                                      (3, "three", ran.append)])  # fmt: skip
        assert migrations.migrate(db) == ["gappy:2"]  # the late step, once; the others not again
        assert ran == [1, 3, 2]
    finally:
        migrations.REGISTERED.clear()
        migrations.REGISTERED.update(saved)
