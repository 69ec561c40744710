# pytest: the SDK is imported from the tree, as componentize-py's `-p runbook-sdk/python` does.
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "runbook-sdk" / "python"))
