@echo off
REM Start the API on port 8000; --reload only when DEBUG=true (other settings come from the environment or .env via config\settings.py).
if /I "%DEBUG%"=="true" (python -m uvicorn main_dramatiq:app --host 0.0.0.0 --port 8000 --reload) else (python -m uvicorn main_dramatiq:app --host 0.0.0.0 --port 8000)
