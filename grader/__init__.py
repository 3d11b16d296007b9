"""dl-autograder: a trustworthy autograder for deep-learning course projects.

The one idea (see DESIGN.md): student code computes, trusted code judges. Student code only
runs inside :mod:`grader.sandbox` worker processes; everything that decides a score is computed
here from data the grader controls.
"""

__version__ = "0.1.0"
