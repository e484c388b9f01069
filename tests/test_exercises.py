"""Every exercise's solution passes its checker, and the checker can fail."""

import pytest

from rlhf_lib import solutions
from rlhf_lib.exercises import EXERCISES, check, reveal


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_solution_passes_its_checker(name, capsys):
    assert check(name, getattr(solutions, name))
    assert "correct" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_checker_rejects_a_wrong_answer(name):
    solution = getattr(solutions, name)

    def off_by_a_bit(*args):
        return solution(*args) + 0.01

    assert not check(name, off_by_a_bit)


def test_unfinished_exercise_does_not_raise(capsys):
    def stub(rewards, gamma):
        raise NotImplementedError

    assert check("reward_to_go", stub) is False
    assert "not done yet" in capsys.readouterr().out


def test_a_crashing_answer_is_reported(capsys):
    assert check("reward_to_go", lambda rewards, gamma: rewards[100]) is False
    assert "IndexError" in capsys.readouterr().out


def test_reveal_prints_the_solution(capsys):
    reveal("gae_one_episode")
    assert "def gae_one_episode" in capsys.readouterr().out
    with pytest.raises(KeyError, match="no exercise"):
        reveal("nope")


def test_every_notebook_poses_at_least_two_exercises():
    per_notebook = {}
    for ex in EXERCISES.values():
        per_notebook[ex.notebook] = per_notebook.get(ex.notebook, 0) + 1
    assert all(per_notebook.get(nb, 0) >= 2 for nb in ("00", "01", "02", "03", "04", "05", "06", "07", "08"))
