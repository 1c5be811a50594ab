"""The command-line interface (`cloudml`)."""


def main() -> None:
    from cloudml.cli.app import main as run

    run()
