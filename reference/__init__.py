"""Instructor solutions for DeepRob P1 (KNN, linear classifiers) and the Lecture 4 optimizers.

These modules are the trusted reference the grader compares student output against. They are
never shown to students and must never be copied into a student-visible location (the grader
image keeps them outside the submission directory and out of any feedback text).
"""
