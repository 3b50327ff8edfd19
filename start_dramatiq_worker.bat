@echo off
REM Start the training worker; settings (DEBUG, LOG_FORMAT, REDIS_URL, ...) come from the environment or .env via config\settings.py.
python dramatiq_worker.py %*
