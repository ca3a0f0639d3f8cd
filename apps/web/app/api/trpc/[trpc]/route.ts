import { handleTrpcRequest } from '@pedigree/api';

// The whole API is one tRPC router; @pedigree/api serves it over the Fetch API.
export const GET = handleTrpcRequest;
export const POST = handleTrpcRequest;
