"""Code that runs inside a worker subprocess (one per role).

Only this package imports llama-cpp-python, and only inside the role modules, so the app process
never pays for loading llama.cpp.
"""
