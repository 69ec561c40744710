# pytest: the SDK is imported from where `quell new` found it, as the build does.
import sys

sys.path.insert(0, {{sdk_python}})
