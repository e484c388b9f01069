"""Named recipes: each builds its trainer's config, and sets only fields it changes."""

from dataclasses import fields

import pytest

from rlhf_lib.recipes import RECIPES, recipe, recipe_config


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_a_recipe_builds_its_config_and_sets_no_field_to_its_default(name):
    cfg = recipe_config(name)
    defaults = {f.name: f.default for f in fields(type(cfg))}
    for field, value in recipe(name).items():
        assert getattr(cfg, field) == value
        assert defaults[field] != value, f"{name} sets {field} to its default: leave it out of the recipe"
    assert recipe_config(name, seed=3).seed == 3  # changes win over the recipe


def test_an_unknown_recipe_names_the_ones_there_are():
    with pytest.raises(KeyError, match="whole-review-dpo"):
        recipe_config("whole-reviews")
