fn main() -> std::process::ExitCode {
    // The learned-regex worker berth starts for itself (no command of its own).
    if let Some(exit) = berth::faults::learned_match::worker::serve_if_started_as_one() {
        return exit;
    }
    berth::cli::main()
}
