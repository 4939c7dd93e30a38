"""A local emulator of the Business Central API v2.0, the Dataverse Web API v9.2 and the Azure AD token
endpoint, served over HTTPS by one uvicorn server. Development and test counterpart only: the
``dynamics_jobqueue`` package never imports it. See README.md in this folder.
"""
