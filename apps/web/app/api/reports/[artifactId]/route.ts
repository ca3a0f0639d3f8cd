import { handleReportRequest } from '@pedigree/api';

// A report artifact's file (results.md, its SVG figures), served only while its bytes still match the recorded SHA-256.
export const GET = handleReportRequest;
