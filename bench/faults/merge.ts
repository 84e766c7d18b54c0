/**
 * bench/faults.sh's last step when the parts ran side by side: merge.js WALL_SECONDS PART.json…
 * prints the one report (report.ts) of all of them.
 */
import { readPart, report } from './report';

const [wall = '0', ...files] = process.argv.slice(2);
for (const line of report(files.map(readPart), Number(wall))) console.log(line);
