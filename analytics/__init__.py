"""Funnel analytics on CRM exports: conversion by channel, pipeline 4V, reverse funnel, stalled leads, lead SLA,
grades and lifecycle, channels from landing URLs, and an HTML report (`analytics.report.run_funnel`)."""
