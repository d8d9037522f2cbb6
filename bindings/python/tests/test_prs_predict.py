"""Polygenic risk prediction (mg_prs_predict, mg_prs_predict_batch,
mg_prs_score_image) with a random-weight model that has a genomics encoder
(`medgemini mkmodel --shape tiny --genome 4,3`). The score image is checked
pixel by pixel against the layout computed here; the risk against the
context's logits of the answer words; the batch against single calls."""
import math

import pytest

import medgemini

TRAITS, THRESHOLDS, CELL, Z_SCALE = 4, 3, 32, 32.0
QUESTION = "Does this individual have coronary artery disease?"


def ref(k):
    """Reference mean and std of score k = trait*3 + threshold (mkmodel)."""
    return 0.01 * k, 1.0 + 0.1 * (k % 5)


def name(t, c):
    return "t%d_p%d" % (t, c)


def level(k, v):
    """The grey level of score k at value v: 128 for a missing (None) or
    NaN one."""
    if v is None or math.isnan(v):
        return 128
    mean, std = ref(k)
    x = round(128.0 + Z_SCALE * (v - mean) / std)   # Python rounds half to even
    return max(0, min(255, x))


def expected_pixels(scores):
    """{trait: (r, g, b)} from {name: value}; names the model does not know
    are ignored."""
    out = {}
    for t in range(TRAITS):
        out[t] = tuple(level(t * THRESHOLDS + c, scores.get(name(t, c)))
                       for c in range(THRESHOLDS))
    return out


def check_image(img, scores):
    info = img.info
    assert (info.width, info.height, info.mode) == (2 * CELL, 2 * CELL, "RGB")
    px = img.tobytes()
    assert len(px) == 2 * CELL * 2 * CELL * 3
    want = expected_pixels(scores)
    side = 2 * CELL
    for t in range(TRAITS):
        r0, c0 = (t // 2) * CELL, (t % 2) * CELL
        rgb = bytes(want[t])
        for y in range(r0, r0 + CELL):
            row = px[(y * side + c0) * 3:(y * side + c0 + CELL) * 3]
            assert row == rgb * CELL, "trait %d row %d: %r, want %r" % (t, y, row[:3], rgb)


@pytest.fixture(scope="module")
def gmodel(genome_path):
    with medgemini.Model.load(genome_path, threads=1) as m:
        yield m


def test_metadata_is_what_the_test_assumes(gmodel):
    md = gmodel.metadata
    assert md["genome.traits"] == ["t0", "t1", "t2", "t3"]
    assert md["genome.thresholds"] == ["p0", "p1", "p2"]
    assert md["genome.grid"] == [2, 2] and md["genome.cell"] == CELL
    assert md["genome.z_scale"] == Z_SCALE
    for k in range(TRAITS * THRESHOLDS):
        assert md["genome.reference_mean"][k] == pytest.approx(ref(k)[0], abs=1e-12)
        assert md["genome.reference_std"][k] == pytest.approx(ref(k)[1], abs=1e-12)


def test_score_image_layout(gmodel):
    scores = {name(t, c): 0.37 * (t + 1) - 0.81 * c for t in range(TRAITS) for c in range(THRESHOLDS)}
    scores["t1_p0"] = 9.0           # clipped to 255
    scores["t2_p2"] = -9.0          # clipped to 0
    del scores["t3_p1"]             # missing: the reference mean, 128
    scores["t0_p2"] = float("nan")  # NaN: 128 as well
    scores["t9_p0"] = 5.0           # unknown names are ignored
    scores["PGS000001"] = -5.0
    check_image(gmodel.score_image(scores), scores)
    want = expected_pixels(scores)
    assert want[1][0] == 255 and want[2][2] == 0 and want[3][1] == 128 and want[0][2] == 128
    # the same as a (names, values) pair
    check_image(gmodel.score_image((list(scores), list(scores.values()))), scores)


@pytest.mark.parametrize("v,grey", [(0.015625, 128), (0.046875, 130), (-0.015625, 128),
                                    (-0.046875, 126), (0.03125, 129)])
def test_score_image_rounds_half_to_even(gmodel, v, grey):
    # score 0 has mean 0 and std 1: 128 + 32 v is exactly v's half-levels
    img = gmodel.score_image({"t0_p0": v})
    assert img.tobytes()[:3] == bytes([grey, 128, 128])
    assert level(0, v) == grey


def test_score_image_only_given_scores(gmodel):
    scores = {"t2_p1": 1.5}
    img = gmodel.score_image(scores)
    check_image(img, scores)
    px = img.tobytes()
    # trait 2 is the square at row 1, column 0; every other square is 128
    assert px[(CELL * 2 * CELL) * 3:(CELL * 2 * CELL) * 3 + 3] == bytes([128, level(7, 1.5), 128])
    assert px[:3] == bytes([128, 128, 128])


def test_score_errors(gmodel):
    with pytest.raises(medgemini.InvalidArgumentError) as e:
        gmodel.score_image((["t0_p0", "t1_p1", "t0_p0"], [1.0, 2.0, 3.0]))
    assert "t0_p0" in e.value.message and e.value.status == 1
    with pytest.raises(medgemini.InvalidArgumentError):
        gmodel.score_image({"nothing_known": 1.0})
    with pytest.raises(medgemini.InvalidArgumentError):
        gmodel.score_image((["t0_p0"], [1.0, 2.0]))
    with pytest.raises(TypeError):
        gmodel.score_image(3.0)
    with gmodel.context() as ctx:
        with pytest.raises(medgemini.InvalidArgumentError) as e:
            ctx.prs_predict((["t0_p0", "t0_p0"], [1.0, 2.0]), QUESTION)
        assert "twice" in e.value.message
        with pytest.raises(medgemini.InvalidArgumentError):
            ctx.prs_risk({"nothing_known": 1.0}, QUESTION)


def answer_ids(model):
    tok = model.tokenizer
    yes, no = tok.tokenize(model.meta("genome.answer_yes")), tok.tokenize(model.meta("genome.answer_no"))
    assert model.meta("genome.answer_yes") == "Y" and model.meta("genome.answer_no") == "N"
    assert len(yes) == 1 and len(no) == 1 and yes != no
    return yes[0], no[0]


def risk_from_logits(logits, yes, no):
    return 1.0 / (1.0 + math.exp(float(logits[no]) - float(logits[yes])))


SCORES = {"t0_p0": 0.5, "t1_p1": -1.2, "t2_p0": 0.8, "t3_p2": 2.0, "t1_p2": 0.1}


def test_prs_predict_risk_is_the_answer_words_share(gmodel):
    yes, no = answer_ids(gmodel)
    # reuse=False: every call reads its prompt afresh, so equal prompts give
    # bit-equal risks (with reuse the part read again may differ in the last
    # bits: checked to 1e-6 below)
    with gmodel.context(threads=1, reuse=False) as ctx:
        text, risk = ctx.prs_predict(SCORES, QUESTION, max_tokens=0)
        assert text == ""
        assert 0.0 < risk < 1.0
        assert risk == pytest.approx(risk_from_logits(ctx.logits(), yes, no), rel=0, abs=1e-12)
        # the prompt holds one block of the model's image tokens
        img_tok = gmodel.tokenizer.special("image")
        assert ctx.tokens().count(img_tok) == gmodel.meta("vision.tokens_per_image")

        r = ctx.prs_risk(SCORES, QUESTION)
        assert r == risk
        assert r == pytest.approx(risk_from_logits(ctx.logits(), yes, no), rel=0, abs=1e-12)

        # with text: the same risk, and the text is the greedy answer
        pieces = []
        text, risk2 = ctx.prs_predict(SCORES, QUESTION, max_tokens=5, on_token=pieces.append)
        assert risk2 == risk
        assert text == "".join(pieces)
        assert ctx.prs_predict(SCORES, QUESTION, max_tokens=5) == (text, risk)

        # other scores, another risk (the scores reach the model)
        other = ctx.prs_risk({"t0_p0": -3.0, "t1_p1": 3.0, "t3_p2": -2.5}, QUESTION)
        assert 0.0 < other < 1.0 and other != risk
        assert other == pytest.approx(risk_from_logits(ctx.logits(), yes, no), rel=0, abs=1e-12)
        # scores the model does not read change nothing
        assert ctx.prs_risk(dict(SCORES, PGS000001=7.0), QUESTION) == risk
    # the model's pooled contexts (which reuse what they read) give the same
    assert gmodel.prs_risk(SCORES, QUESTION) == pytest.approx(risk, rel=0, abs=1e-6)
    t2, r2 = gmodel.prs_predict(SCORES, QUESTION, max_tokens=5)
    assert t2 == text and r2 == pytest.approx(risk, rel=0, abs=1e-6)


def test_prs_predict_batch_equals_single_calls(gmodel):
    names = ["t0_p0", "t1_p1", "t2_p2", "t3_p0"]
    rows = [[0.5, -1.2, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 1.0, -2.0, float("nan")]]
    questions = [QUESTION, "Does this individual have type 2 diabetes?"]
    with gmodel.context(threads=1) as ctx:
        got = ctx.prs_predict_batch(rows, names, questions)
        assert len(got) == 3 and all(len(r) == 2 for r in got)
        for i, row in enumerate(rows):
            for q, question in enumerate(questions):
                single = ctx.prs_risk((names, row), question)
                assert 0.0 < single < 1.0
                assert abs(float(got[i][q]) - single) <= 1e-6, (i, q, got[i][q], single)
        # one question as a string; the pooled model gives the same
        one = gmodel.prs_predict_batch(rows, names, QUESTION)
        assert [float(r[0]) for r in one] == pytest.approx([float(r[0]) for r in got], abs=1e-12)
    with pytest.raises(medgemini.InvalidArgumentError):
        gmodel.prs_predict_batch([[1.0, 2.0]], names, questions)   # short row


def test_prs_predict_batch_numpy(gmodel):
    np = pytest.importorskip("numpy")
    names = ["t0_p0", "t1_p1"]
    mat = np.array([[0.5, -1.2], [2.0, 0.3]])
    got = gmodel.prs_predict_batch(mat, names, [QUESTION, "Asthma?"])
    assert isinstance(got, np.ndarray) and got.shape == (2, 2) and got.dtype == np.float64
    with gmodel.context(threads=1) as ctx:
        assert got[1, 1] == pytest.approx(ctx.prs_risk((names, mat[1]), "Asthma?"), abs=1e-6)


def test_prs_predict_cancelled(gmodel):
    c = medgemini.Cancel()
    c.cancel()
    with pytest.raises(medgemini.Interrupted):
        gmodel.prs_predict(SCORES, QUESTION, cancel=c)


def test_model_without_genome_is_unsupported(model):
    # the plain tiny model has an image encoder but no genome.* metadata
    assert model.meta("genome.traits", None) is None
    calls = [lambda: model.score_image({"t0_p0": 0.5}),
             lambda: model.prs_predict({"t0_p0": 0.5}, QUESTION),
             lambda: model.prs_risk({"t0_p0": 0.5}, QUESTION),
             lambda: model.prs_predict_batch([[0.5]], ["t0_p0"], [QUESTION])]
    for call in calls:
        with pytest.raises(medgemini.UnsupportedError) as e:
            call()
        assert e.value.status == 7
        assert "genom" in e.value.message
