def main() -> None:
    raise SystemExit("cli not ready")
