"""The CLI's parser: a rejected command line or config file is one line naming the mistake."""

import re

import pytest

from experiments.cli import main
from experiments.parser import condense
from tests.conftest import config

MLP = config("mlp_classification")

# What jsonargparse 4.46 says, as the parser hands it over, and the one line made of it.
RAW = {
    "wrong type": (
        'Parser key "trainer.max_epochs":\n  Does not validate against any of the Union subtypes'
        "\n  Subtypes: [<class 'NoneType'>, <class 'int'>]\n  Errors:\n"
        "    - Expected a <class 'NoneType'>\n    - Expected a <class 'int'>\n"
        "  Given value type: <class 'str'>\n  Given value: abc",
        "trainer.max_epochs: expected int (given: abc)",
    ),
    "nested literal": (
        'Parser key "model":\n  Does not validate against any of the Union subtypes\n'
        "  Errors:\n    - Expected a <class 'NoneType'>\n"
        "    - Problem with given class_path 'models.ClassificationTask':\n"
        '        Parser key "network":\n'
        "          Problem with given class_path 'models.MLP':\n"
        '            Parser key "activation":\n'
        "              Expected a typing.Literal['relu', 'sigmoid']. Got value: swish\n"
        "  Given value: NestedArg(key='network.init_args.activation', val='swish')",
        "model.network.activation: expected one of 'relu', 'sigmoid'. Got value: swish",
    ),
    "missing class": (
        "Parser key \"model\":\n  Errors:\n    - Expected a <class 'NoneType'>\n"
        "    - Problem with given class_path 'models.ClassificationTask':\n"
        '        Parser key "network":\n'
        "          Problem with given class_path 'models.Nope':\n"
        "            module 'models' has no attribute 'Nope'\n",
        "model.network: class_path 'models.Nope': module 'models' has no attribute 'Nope'",
    ),
    "malformed file": (
        "Problems parsing config: /x/bad.yaml:4:1: did not find expected ',' or ']'",
        "/x/bad.yaml:4:1: did not find expected ',' or ']'",
    ),
}


@pytest.mark.parametrize(("raw", "line"), RAW.values(), ids=RAW.keys())
def test_condense_keeps_the_keys_the_reason_and_the_value(raw, line):
    assert condense(raw) == line


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        (
            "--trainer.max_epochz=3",
            "unknown option --trainer.max_epochz (did you mean --trainer.max_epochs?)",
        ),
        ("--nothing_like_it", "unknown option --nothing_like_it (see --help for the options)"),
        (
            "--network.hidden_sizes=[5]",  # as the help of a network once named it
            "unknown option --network.hidden_sizes "
            "(did you mean --model.init_args.network.init_args.hidden_sizes?)",
        ),
    ],
)
def test_condense_suggests_a_close_option(given, hint):
    options = ["--trainer.max_epochs", "--trainer.min_epochs", "--experiment"]
    assert condense(f"Unrecognized arguments: {given}", options) == hint


# (command line after the subcommand, words the one line must hold)
REFUSED = {
    "threads neither a count nor auto": (
        ["--threads", "many"],
        ["--threads must be a positive integer or auto, got 'many'"],
    ),
    "unknown option": (
        ["--trainer.max_epochz", "3"],
        ["unknown option --trainer.max_epochz", "did you mean --trainer.max_epochs"],
    ),
    "unknown key in a network": (["--model.init_args.network.init_args.widht", "4"], ["widht"]),
    "wrong type": (["--trainer.max_epochs", "abc"], ["trainer.max_epochs", "abc"]),
    "wrong type of a data value": (
        ["--data.init_args.num_features", "ten"],
        ["num_features", "ten"],
    ),
    "class_path that does not exist": (
        ["--model.init_args.network.class_path", "models.Nope"],
        ["models.Nope"],
    ),
    "class_path that is not a network": (
        ["--model.init_args.network.class_path", "datamodules.StripeImageData"],
        ["datamodules.StripeImageData"],
    ),
    "class_path that is not a datamodule": (["--data.class_path", "models.MLP"], ["models.MLP"]),
    "unknown activation": (
        ["--model.init_args.network.init_args.activation", "swish"],
        ["activation", "swish", "relu"],
    ),
    "unknown pooling": (
        ["--config", config("cnn"), "--model.init_args.network.init_args.pool", "median"],
        ["pool", "median", "max"],
    ),
    "unknown recurrent cell": (
        ["--config", config("recurrent"), "--model.init_args.network.init_args.cell", "gpt"],
        ["cell", "gpt", "lstm"],
    ),
    "missing config file": (["--config", "experiments/nonexistent.yaml"], ["nonexistent.yaml"]),
    "typo in a nested key": (
        ["--model.init_args.network.init_args.hiden_sizes", "[64]"],
        ["hiden_sizes", "did you mean hidden_sizes"],
    ),
    "wrong type in a nested argument": (
        ["--model.init_args.optimizer.init_args.lr", "1e-3x"],
        ["optimizer.init_args.lr", "expected float", "1e-3x"],
    ),
    "callback without its required argument": (
        ["--trainer.callbacks+=EarlyStopping"],
        ["trainer.callbacks", "EarlyStopping needs monitor", "--trainer.callbacks.monitor"],
    ),
    "network with PyTorch's usual argument names": (
        ["--model.init_args.network.class_path", "tests.usernets.UsualNames"],
        ["tests.usernets.UsualNames lacks input_shape and num_outputs", "in_features"],
    ),
}


@pytest.mark.parametrize(("args", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_command_line_gets_one_line(run_cli, tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", MLP, *args)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code != 0
    assert line.startswith("error: ")
    for word in words:
        assert word in line, (word, line)
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            "trainer:\n  max_epochs: 3\n  callbacks: [a, b\n",
            "4:1",
            "did not find expected ',' or ']'",
        ),
        ("trainer:\n  max_epochs: 3\n   devices: 1\n", "3:11", "mapping values are not allowed"),
    ],
    ids=["unclosed list", "bad indentation"],
)
def test_a_malformed_yaml_file_is_named_with_line_column_and_reason(
    run_cli, tmp_path, capsys, text, where, reason
):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", "bad.yaml")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert line.startswith(f"error: {bad}:{where}: {reason}")
    assert not (tmp_path / "lightning_logs").exists()


def test_a_network_with_defaults_for_other_names_is_refused_before_it_trains(
    run_cli, tmp_path, capsys
):
    # It would build, from its defaults, with sizes that are not the data's.
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--model.init_args.network.class_path", "tests.usernets.Defaults")
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code != 0
    assert "tests.usernets.Defaults lacks input_shape and num_outputs" in line
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("option", "typed"),
    [
        ("--model.init_args.network.help=models.MLP", "--model.init_args.network.init_args."),
        ("--model.help=models.ClassificationTask", "--model.init_args."),
        ("--data.help=datamodules.CsvData", "--data.init_args."),
    ],
)
def test_a_class_s_help_names_the_options_as_they_are_typed(run_cli, capsys, option, typed):
    # Not through run_cli: the options it adds after this one would go to the class's help.
    with pytest.raises(SystemExit) as done:
        main(["fit", option])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"Help for {option}" in out
    options = re.findall(r"^  (--\S+)", out, flags=re.MULTILINE)
    assert options
    assert all(o.startswith(typed) for o in options), options
    if "network" in option:  # what the help names, the command line takes
        (dropout,) = [o for o in options if o.endswith(".dropout")]
        with pytest.raises(SystemExit) as done:
            run_cli("fit", dropout, "0.25", "--print_config")
        assert done.value.code == 0
        assert "dropout: 0.25" in capsys.readouterr().out
