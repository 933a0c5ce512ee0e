/* The child every spawn benchmark starts: a static binary that exits at once, so that the
 * measurement is the spawn and the exec, not the dynamic loader. */
int main(void) { return 0; }
