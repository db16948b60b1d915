#include "sim/sim_main.h"

int main(int argc, char** argv) {
  return infergate::sim::sim_main(argc, argv);
}
