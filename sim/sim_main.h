#pragma once
// The whole infergate-sim program behind a thin main(), so the library holds all the logic.

namespace infergate::sim {

// Parses the command line, then serves until SIGTERM/SIGINT. Returns the process exit code:
// 0 help/version/clean stop, 1 bad arguments, 2 runtime failure (e.g. the port is taken).
int sim_main(int argc, char** argv);

}  // namespace infergate::sim
