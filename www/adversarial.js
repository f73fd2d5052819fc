export function setupAdversarialTab(call) {}
