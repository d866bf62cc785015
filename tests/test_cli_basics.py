import json

from helpers import run_dice_process


def test_help_lists_encode(dice):
    result = dice("--help")
    assert result.code == 0
    assert "encode" in result.stdout and "recipes" in result.stdout


def test_python_m_dicecli_and_version():
    result = run_dice_process("--version")
    assert result.returncode == 0
    assert result.stdout.decode().startswith("dice ")


def test_recipes_lists_every_paper_model(dice):
    result = dice("recipes", "--json")
    assert result.code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    expected = {
        "sd15": "sd15", "dreamshaper": "sd15", "absolutereality": "sd15", "anime-pastel-dream": "sd15",
        "dreamshaper-pixelart": "sd15", "3d-animation-diffusion": "sd15", "sdxl": "sdxl",
        "pixart-alpha": "pixart", "tiny-sd15": "sd15",
    }
    assert {name: rows[name]["family"] for name in expected} == expected
    assert rows["dreamshaper"]["source"] == "Lykon/DreamShaper"
    assert rows["dreamshaper"]["available"] == "no"  # empty, offline hub cache
    assert rows["dreamshaper-pixelart"]["available"] == "no"


def test_recipes_table_for_people(dice):
    result = dice("recipes")
    assert result.code == 0
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["name", "family", "source", "available"]
    assert any(line.startswith("pixart-alpha") and "PixArt-alpha/PixArt-XL-2-512x512" in line for line in lines)


def test_unknown_command_is_usage_error(dice):
    result = dice("frobnicate")
    assert result.code == 2
