"""humans.py: the published participant-data format, pooled accuracy, top expertise per
abstract (pandas nlargest semantics), per-section accuracy and clear errors."""

from __future__ import annotations

import pytest

from expertlm.errors import ExpertlmError
from expertlm.eval.evaluate import eval_humans
from expertlm.eval.humans import human_summary, read_trials, top_expertise

HEADER = ",pid,expertise,confidence,click_outside,correct,rt,abstract_id,journal_section,click_slider,recognised,age,country,current position,experience,sex"
# (pid, expertise, confidence, correct, abstract_id, section)
TRIALS = [
    ("1.0", 10, 20, 1, "3.0", "human_Systems/Circuits"),
    ("1.0", 90, 80, 1, "4.0", "human_Behavioral/Cognitive"),
    ("1.0", 50, 50, 0, "5.0", "machine_Systems/Circuits"),
    ("2.0", 70, 60, 0, "3.0", "human_Systems/Circuits"),
    ("2.0", 30, 10, 0, "4.0", "human_Behavioral/Cognitive"),
    ("3.0", 70, 90, 1, "3.0", "human_Systems/Circuits"),
    ("3.0", 20, 40, 1, "4.0", "human_Behavioral/Cognitive"),
    ("4.0", 40, 30, 1, "3.0", "human_Systems/Circuits"),
    ("4.0", 95, 70, 0, "4.0", "human_Behavioral/Cognitive"),
    ("5.0", 60, 60, 1, "3.0", "human_Systems/Circuits"),
    ("5.0", 10, 5, 1, "4.0", "human_Behavioral/Cognitive"),
]


def write(path, trials=TRIALS, header=HEADER):
    rows = [header]
    for i, (pid, exp, conf, corr, aid, sec) in enumerate(trials):
        rows.append(
            f"{i},{pid},{exp},{conf},,{corr},1000,{aid},{sec},1,0,30,UK,Postdoctoral researcher,5,Female"
        )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_reads_the_published_format(tmp_path):
    trials = read_trials(write(tmp_path / "p.csv"))
    assert len(trials) == 11
    t = trials[2]
    assert (t.pid, t.author, t.section, t.abstract_id, t.correct) == (
        "1.0",
        "machine",
        "Systems/Circuits",
        "5",
        0,
    )


def test_pooled_accuracy_per_section_and_participant_mean(tmp_path):
    s = human_summary(read_trials(write(tmp_path / "p.csv")), items="human", bins=2)
    # 10 human-written trials, 7 correct: pooled over trials
    assert (s["n"], s["correct"], s["accuracy"]) == (10, 7, 0.7)
    assert s["participants"] == 5 and s["abstracts"] == 2
    # participants: 1 -> 2/2, 2 -> 0/2, 3 -> 2/2, 4 -> 1/2, 5 -> 2/2: mean 0.7 here too
    assert s["per_participant_mean"] == pytest.approx(0.7)
    assert s["per_section"]["Systems/Circuits"]["accuracy"] == 0.8
    assert s["per_section"]["Behavioral/Cognitive"]["accuracy"] == 0.6
    assert "pooled over trials" in s["pooling"]
    assert human_summary(read_trials(tmp_path / "p.csv"), items="machine")["n"] == 1


def test_top_expertise_keeps_int_share_per_abstract_first_on_ties(tmp_path):
    trials = [t for t in read_trials(write(tmp_path / "p.csv")) if t.author == "human"]
    top = top_expertise(trials, 0.4)  # 5 trials per abstract -> int(2.0) = 2 each
    # abstract 3: expertise 10, 70, 70, 40, 60 -> the two 70s (pids 2 and 3)
    # abstract 4: expertise 90, 30, 20, 95, 10 -> 95 (pid 4) and 90 (pid 1)
    assert sorted((t.abstract_id, t.pid) for t in top) == [
        ("3", "2.0"),
        ("3", "3.0"),
        ("4", "1.0"),
        ("4", "4.0"),
    ]
    # int(5 * 0.2) = 1: abstract 3's top is the first of the tied 70s (pid 2, wrong)
    top1 = top_expertise(trials, 0.2)
    assert sorted((t.abstract_id, t.pid, t.correct) for t in top1) == [
        ("3", "2.0", 0),
        ("4", "4.0", 0),
    ]
    s = human_summary(trials, top_pct=0.4)
    assert s["top_expertise"]["accuracy"] == 0.5 and s["top_expertise"]["n"] == 4


def test_eval_humans_writes_a_summary(tmp_path):
    s = eval_humans(write(tmp_path / "p.csv"), tmp_path / "h", bins=2)
    assert (tmp_path / "h" / "summary.json").is_file()
    assert s["accuracy"] == 0.7 and len(s["calibration"]["bins"]) == 2
    with pytest.raises(ExpertlmError, match="already exists"):
        eval_humans(tmp_path / "p.csv", tmp_path / "h")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: [*t[:3], ("9.0", 50, 50, 2, "3.0", "human_X"), *t[3:]],
            "p.csv:5: column 'correct'",
        ),
        (
            lambda t: [*t[:1], ("9.0", 150, 50, 1, "3.0", "human_X"), *t[1:]],
            "p.csv:3: column 'expertise'",
        ),
        (
            lambda t: [*t[:1], ("9.0", "n/a", 50, 1, "3.0", "human_X"), *t[1:]],
            "p.csv:3: column 'expertise': not a number",
        ),
    ],
)
def test_bad_rows_name_file_line_and_column(tmp_path, edit, message):
    with pytest.raises(ExpertlmError, match=message):
        read_trials(write(tmp_path / "p.csv", edit(TRIALS)))


def test_missing_columns_and_no_matching_trials(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("pid,correct\n1,1\n", encoding="utf-8")
    with pytest.raises(ExpertlmError, match="missing column"):
        read_trials(p)
    only_machine = write(tmp_path / "m.csv", [t for t in TRIALS if t[5].startswith("machine")])
    with pytest.raises(ExpertlmError, match="no trials on human-written items"):
        human_summary(read_trials(only_machine))
    with pytest.raises(ExpertlmError, match="no such participant data file"):
        read_trials(tmp_path / "nope.csv")
