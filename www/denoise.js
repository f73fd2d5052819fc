export function setupDenoiseTab(call) {}
