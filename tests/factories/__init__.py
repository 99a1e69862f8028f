"""Builders of test data, one module per app, made through the apps' own services:

    accounts   users, orgs, memberships, plans, subscriptions
    apikeys    keys; a tenant (a user, their org and a live key)
    pools      models, pools, routers, routes: a catalog on given router URLs
    metering   gateway requests at chosen times, and usage totals
    seeding    the gateway's test world in one namespace (`seeding.catalog`,
               `seeding.tenant`, `seeding.plan`, `seeding.MODEL`, ...), defined above

Fixtures are not defined here: they live in a conftest.py (see tests/conftest.py).
"""
